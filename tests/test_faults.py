"""Every fault a trial can cause, injected for real in one study through real Ray, SQLite and
MLflow: each ends as a FAIL or PRUNED trial with its reason in both stores, the study goes on,
and the final table counts failures by reason."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tuner.driver import study as st
from tuner.driver.cli import main

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")

# faulty_workloads:chaos fails at its first step in the way its batch size picks.
SPACE = """
study: chaos
workload: {name: "faulty_workloads:chaos", options: {image_size: 16}}
knobs:
  batch_size: [8, 1, 2, 3, 128, 5, 64, 32, 16, 256]
  compile: [none, inductor]
  compile_mode: [default, reduce-overhead]
  threads: [1]
baseline: {batch_size: 8, threads: 1, compile: none}
try_first:
  - {compile: inductor, compile_mode: reduce-overhead}
  - {batch_size: 1}
  - {batch_size: 2}
  - {batch_size: 3}
  - {batch_size: 128}
  - {batch_size: 5}
  - {batch_size: 64}
  - {batch_size: 32}
  - {batch_size: 16}
  - {batch_size: 16, compile: inductor, compile_mode: reduce-overhead}
  - {batch_size: 256}
budget: {trials: 12, timeout_s: 600}
measure: {warmup_steps: 1, timed_steps: 4, min_timed_steps: 4, max_cv: 0.5, remeasure: 2}
trial: {time_limit_s: 25, max_concurrent: 2, memory_mb: 900}
guard: {steps: 2, batch_size: 8}
sampler: {name: random, seed: 0}
"""


def test_every_trial_fault_is_recorded_and_the_study_goes_on(ray_local, workdir: Path,
                                                             capsys) -> None:
    space = workdir.parent / "chaos.yaml"
    space.write_text(SPACE, encoding="utf-8")
    code = main(["search", "--space", str(space)])
    out = capsys.readouterr().out
    assert code == 0, out

    study = optuna.load_study(study_name="chaos", storage=f"sqlite:///{workdir / 'optuna.db'}")
    trials = study.get_trials()
    # the budget counts measurements: reused configs and choices that cannot run here are
    # trials beyond it (issue 23)
    counted = [t for t in trials if st.DUPLICATE_OF not in t.user_attrs
               and st.SKIPPED not in t.user_attrs and t.user_attrs[st.STATUS] != "unsupported"]
    assert len(counted) == 12, out

    def outcome(batch: int, mode: str = "default") -> optuna.trial.FrozenTrial:
        """The first trial of this config (try_first's; the sampler may propose it again)."""
        return next(t for t in trials if t.user_attrs[st.KNOBS]["batch_size"] == batch
                    and t.user_attrs[st.KNOBS].get("compile_mode", "default") == mode)

    expected = {
        1: (TrialState.FAIL, "failed", "deliberate failure in the training step"),
        2: (TrialState.FAIL, "crashed", "SIGABRT"),
        3: (TrialState.FAIL, "crashed", "SIGSEGV"),
        128: (TrialState.PRUNED, "oom", "memory limit"),  # PRUNED: the sampler sees it
        5: (TrialState.FAIL, "timeout", "time limit of 25 s"),
    }
    for batch, (state, status, words) in expected.items():
        trial = outcome(batch)
        assert trial.state == state, (batch, trial.user_attrs)
        assert trial.user_attrs[st.STATUS] == status, (batch, trial.user_attrs)
        assert words in trial.user_attrs[st.REASON], (batch, trial.user_attrs[st.REASON])

    # unsupported: the first learns it in its trial process, the second is never started
    for batch in (8, 16):
        skipped = outcome(batch, "reduce-overhead")
        assert skipped.state == TrialState.PRUNED
        assert "CUDA graphs" in skipped.user_attrs[st.REASON]
    assert "skipped, not started" in out

    # the same config at a larger batch is known to run out of memory: never started
    bigger = outcome(256)
    assert bigger.state == TrialState.PRUNED and bigger.user_attrs[st.STATUS] == "oom"
    assert (f"batch 128 already ran out of memory with the rest of the config the same "
            f"(trial {outcome(128).number})") in bigger.user_attrs[st.REASON]
    assert bigger.constraints[st.CONSTRAINT] > 0  # infeasible for the sampler

    # noisy timings: re-measured; one settles, one stays noisy and is never reported best
    steady, noisy = outcome(32).user_attrs[st.METRICS], outcome(64).user_attrs[st.METRICS]
    assert steady["measure_rounds"] >= 2 and steady["noisy"] == 0  # 2 unless the host hiccups
    assert noisy["measure_rounds"] == 3 and noisy["noisy"] == 1
    healthy = [t for t in trials if t.state == TrialState.COMPLETE]
    fastest = max(healthy, key=lambda t: t.user_attrs[st.METRICS]["samples_per_sec"])
    assert fastest.number == outcome(64).number  # fastest on its median, but noisy:
    best = (workdir / "best" / "chaos.yaml").read_text()
    assert f"trial: {outcome(64).number}\n" not in best
    assert outcome(16).state == TrialState.COMPLETE  # the study went on after every fault

    # the final table counts failures by reason
    assert "failures by reason:" in out
    for words in ("failed: RuntimeError", "crashed: trial process killed by SIGABRT",
                  "crashed: trial process killed by SIGSEGV", "oom: killed at its memory limit",
                  "timeout: killed at its time limit", "unsupported:", "noisy: step-time cv"):
        assert words in out.split("failures by reason:")[1], words
    assert "1 too noisy to rank" in out  # the cv threshold of 50% is far above host noise

    # MLflow holds every trial, closed with the same outcome
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("chaos")
    runs = {r.data.tags["tuner.trial"]: r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("tuner.kind") == "trial"}
    assert len(runs) == len(trials)
    for trial in trials:
        run = runs[str(trial.number)]
        assert run.data.tags["tuner.status"] == trial.user_attrs[st.STATUS]
        assert run.info.status == ("FINISHED" if trial.state == TrialState.COMPLETE else "FAILED")
        assert run.data.tags["tuner.reason"] == trial.user_attrs.get(st.REASON, "")

    # what a failed trial left to read: in Optuna, in MLflow (trial.log), named in its line
    failed = outcome(1)
    assert "Traceback" in failed.user_attrs[st.LOG]
    assert "deliberate failure in the training step" in failed.user_attrs[st.LOG]
    assert failed.user_attrs[st.LOG].count("deliberate failure") <= 2  # not the stderr copy too
    assert st.LOG not in outcome(16).user_attrs  # an ok trial keeps none
    assert (f"trial {failed.number} failed: RuntimeError: deliberate failure in the training "
            f"step (its log: tuner log --study chaos --trial {failed.number}") in out
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    log_text = mlflow.artifacts.load_text(f"runs:/{runs[str(failed.number)].info.run_id}/"
                                          "trial.log")
    assert log_text == failed.user_attrs[st.LOG]
    assert main(["log", "--study", "chaos", "--trial", str(failed.number)]) == 0
    printed = capsys.readouterr().out
    assert "Traceback" in printed and f"trial {failed.number} failed" in printed
    assert main(["log", "--study", "chaos", "--trial", str(outcome(16).number)]) == 0
    assert "ended ok: nothing to read" in capsys.readouterr().out

    # optuna-dashboard reads the objective's name and sorts by scalar attributes
    assert study.metric_names == ["samples_per_sec"]
    assert outcome(16).user_attrs["samples_per_sec"] == \
        outcome(16).user_attrs[st.METRICS]["samples_per_sec"]
