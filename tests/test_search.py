"""End to end, real parts: `tuner search` through local Ray, SQLite Optuna storage and MLflow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import SPACES
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tuner.driver import study as st
from tuner.driver.cli import main

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")


def _study(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'optuna.db'}")


def _runs(workdir: Path, experiment: str) -> tuple[list, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("tuner.kind") == "search"]
    children = [r for r in runs if r.data.tags.get("tuner.kind") == "trial"]
    return parents, children


def test_quick_search_fills_both_stores(ray_local, workdir: Path, capsys,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(workdir.parent / "step-summary.md"))
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # a point a second
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    result_json = workdir.parent / "result.json"
    code = main(["search", "--space", str(SPACES / "quick_train.yaml"), "--trials", "4",
                 "--result-json", str(result_json), "--set", "measure.max_timed_s=0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    best_knobs = yaml.safe_load((workdir / "best" / "quick_train.yaml").read_text())["knobs"]
    assert "trial 0 started (baseline" in out and "[4/4]" in out
    assert "speed-up" in out and "best config:" in out
    assert "TFLOP/s (" in out and "of its device's" in out  # headroom, per trial and the best
    # what a CI step reads, and the direct links into MLflow's UI
    result = json.loads(result_json.read_text())
    assert result["exit_code"] == 0 and result["trials"]["finished"] == 4
    assert result["best"]["knobs"] == yaml.safe_load(
        (workdir / "best" / "quick_train.yaml").read_text())["knobs"]
    assert "### Top configs by samples_per_sec" in (workdir.parent / "step-summary.md").read_text()
    assert "  this search: http://127.0.0.1:5000/#/experiments/" in out
    assert "baseline and best trials compared: http://127.0.0.1:5000/#/compare-runs?runs=[" in out

    study = _study(workdir, "quick_train")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].user_attrs[st.ROLE] == st.BASELINE
    # then the hardware's known-good config (a CPU with AVX512-BF16 or AMX: bf16 +
    # channels_last), then the sweep: the other batch sizes from the best so far
    features = trials[0].user_attrs[st.INFO]["cpu_features"]
    roles = [trial.user_attrs[st.ROLE] for trial in trials[1:]]
    if {"avx512_bf16", "amx_bf16"} & set(features):
        assert roles == ["prior", "sweep", "sweep"], roles
        assert "queued known-good config(s) for this hardware next: dtype=bf16" in out
        assert trials[1].user_attrs[st.KNOBS]["memory_format"] == "channels_last"
    else:
        assert roles == ["sweep"] * 3, roles
    sweep = [t for t in trials if t.user_attrs[st.ROLE] == "sweep"]
    assert sorted(t.user_attrs[st.KNOBS]["batch_size"] for t in sweep[:2]) == [16, 64]
    assert trials[0].user_attrs[st.METRICS]["speedup"] == 1.0
    for trial in trials:
        metrics = trial.user_attrs[st.METRICS]
        assert metrics["samples_per_sec"] > 0 and metrics["samples_per_dollar"] > 0
        assert trial.user_attrs[st.MLFLOW_RUN_ID]

    parents, children = _runs(workdir, "quick_train")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    by_id = {run.info.run_id: run for run in children}
    for trial in trials:
        run = by_id[trial.user_attrs[st.MLFLOW_RUN_ID]]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["tuner.trial"] == str(trial.number)
        assert run.data.params["batch_size"] == str(trial.user_attrs[st.KNOBS]["batch_size"])
        assert run.info.status == "FINISHED"
        assert "version.torch" in run.data.tags or "tuner.duplicate_of" in run.data.tags
        if "tuner.duplicate_of" not in run.data.tags:
            assert run.data.metrics["step_time_median_s"] > 0
            assert "peak_rss_mb" in run.data.metrics
            # headroom: the baseline counted the FLOPs and measured the roof; all are rated
            assert run.data.metrics["achieved_tflops"] > 0 and run.data.metrics["roof_share"] > 0
    assert parents[0].data.metrics["best_samples_per_sec"] > 0
    # the parent run: the space's settings and the best config as params, the resolved space
    # and the command as artifacts, the best so far stepped by trial (issue 22)
    parent = parents[0]
    assert parent.data.params["space.budget.trials"] == "6"
    assert parent.data.params["space.knobs.batch_size"] == "[16, 64, 256]"
    assert parent.data.params["best.batch_size"] == str(best_knobs["batch_size"])
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    history = client.get_metric_history(parent.info.run_id, "best_so_far_samples_per_sec")
    steady = [t.number for t in trials if not t.user_attrs[st.METRICS].get("noisy")]
    assert [m.step for m in history] == steady  # a noisy trial never moves the best
    load = client.get_metric_history(parent.info.run_id, "system/cpu_utilization_percentage")
    assert len(load) >= 2 and all(0 <= m.value <= 100 for m in load), load  # the machine's load
    assert "system/system_memory_usage_megabytes" in parent.data.metrics
    assert history[-1].value == parent.data.metrics["best_samples_per_sec"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space.resolved.yaml", "command.txt", "knob_effects.md"} <= artifacts, artifacts
    command = client.download_artifacts(parent.info.run_id, "command.txt", str(workdir.parent))
    assert Path(command).read_text().startswith("tuner search --space ")

    best = yaml.safe_load((workdir / "best" / "quick_train.yaml").read_text())
    assert best["study"] == "quick_train" and best["knobs"]["batch_size"] in (16, 64, 256)

    # the study resumes, and `tuner best` rebuilds the table from storage alone
    assert main(["search", "--space", str(SPACES / "quick_train.yaml"), "--trials", "4"]) == 0
    assert "nothing to run" in capsys.readouterr().out
    # measured by time with screening: a config far slower than the best (batch 16 with a
    # loader worker: a third of the best here) stops at its window
    _study(workdir, "quick_train").enqueue_trial({"batch_size": 16, "num_workers": 1})
    assert main(["search", "--space", str(SPACES / "quick_train.yaml"), "--trials", "7",
                 "--set", "measure.timed_steps=5000", "--set", "measure.max_timed_s=1.5",
                 "--set", "measure.screen_s=0.3", "--set", "measure.prune_below=0.9",
                 "--set", "budget.confirm=1"]) == 0
    out = capsys.readouterr().out
    trials = _study(workdir, "quick_train").get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    slow = next(t for t in trials if t.params["batch_size"] == 16
                and t.params["num_workers"] == 1)
    assert slow in pruned, out
    for trial in pruned:
        assert trial.user_attrs[st.STATUS] == "pruned"
        assert "below the search's cut" in trial.user_attrs[st.REASON]
        assert trial.intermediate_values  # what the sampler learns from
        assert trial.user_attrs[st.METRICS]["samples_per_sec"] > 0
    assert "pruned: stopped after" in out
    # the budget's last trial measures the best config again; it is never cut short
    confirm = trials[-1]
    assert confirm.user_attrs[st.ROLE] == st.CONFIRM and confirm.state == TrialState.COMPLETE
    confirmed = trials[confirm.user_attrs[st.CONFIRMS]]
    assert confirm.user_attrs[st.KNOBS] == confirmed.user_attrs[st.KNOBS]
    assert "confirming the best config (trial" in out
    assert main(["best", "--study", "quick_train"]) == 0
    shown = capsys.readouterr().out
    assert "speed-up" in shown and "knobs:" in shown
    assert main(["best", "--study", "quick_train", "--format", "json"]) == 0
    shown_json = json.loads(capsys.readouterr().out)
    assert shown_json["best"]["trial"] == shown_json["ranked"][0]["trial"]
    assert main(["studies", "--format", "json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["study"] == "quick_train" and listed["trials"] == len(trials)
    assert main(["best", "--study", "quick_trian"]) == 2
    assert "did you mean quick_train?" in capsys.readouterr().err

    # another study of this workload in the storage warm-starts from this one's best, named
    assert main(["search", "--space", str(SPACES / "quick_train.yaml"), "--study", "again",
                 "--trials", "2", "--set", "sampler.priors=false",
                 "--set", "measure.max_timed_s=0.5"]) == 0
    out = capsys.readouterr().out
    assert "warm start from study quick_train (similarity 1.00: same device, same CPU " \
           "features, same GPU, same torch): queued" in out, out
    roles = [t.user_attrs[st.ROLE] for t in _study(workdir, "again").get_trials()]
    assert roles[:2] == [st.BASELINE, "transfer"], roles


def test_guard_rejects_fp16_underflow_and_never_reports_it_best(ray_local, workdir: Path,
                                                                capsys) -> None:
    space = str(SPACES / "guard_demo.yaml")
    assert main(["search", "--space", space, "--trials", "1"]) == 0  # the baseline alone
    study = _study(workdir, "guard_demo")
    for dtype in ("fp16", "bf16"):
        study.enqueue_trial({"dtype": dtype, "batch_size": 32})
    assert main(["search", "--space", space, "--trials", "3"]) == 0  # resumes the study
    out = capsys.readouterr().out

    trials = {t.user_attrs[st.KNOBS]["dtype"]: t
              for t in _study(workdir, "guard_demo").get_trials()}
    assert set(trials) == {"fp32", "fp16", "bf16"}
    fp16, bf16 = trials["fp16"], trials["bf16"]
    assert fp16.state == TrialState.COMPLETE and bf16.state == TrialState.COMPLETE
    assert fp16.constraints[st.CONSTRAINT] > 0, fp16.user_attrs  # infeasible: rejected
    assert bf16.constraints[st.CONSTRAINT] <= 0, bf16.user_attrs
    assert "REJECTED" in out and "guard loss" in fp16.user_attrs[st.REASON]
    assert _study(workdir, "guard_demo").best_trial.number != fp16.number
    steady = [t for t in (trials["fp32"], bf16) if not t.user_attrs[st.METRICS].get("noisy")]
    best_file = workdir / "best" / "guard_demo.yaml"
    if steady:  # a noisy trial is never ranked: on a busy machine both may be, then no best
        best = yaml.safe_load(best_file.read_text())
        assert best["trial"] != fp16.number
    else:
        assert not best_file.exists()

    _, children = _runs(workdir, "guard_demo")
    verdicts = {r.data.params["dtype"]: r.data.tags["tuner.verdict"] for r in children}
    assert verdicts == {"fp32": "accepted", "bf16": "accepted", "fp16": "rejected"}


def test_shipped_cpu_train_space_runs_in_quick_mode(ray_local, workdir: Path, capsys) -> None:
    """The shipped ResNet-50 space, shrunk to seconds: small images, no compile, two trials."""
    code = main(["search", "--space", str(SPACES / "cpu_train.yaml"), "--trials", "2",
                 "--set", "workload.options.image_size=32", "--set", "knobs.compile=[none]",
                 "--set", "measure.warmup_steps=1", "--set", "measure.timed_steps=2",
                 "--set", "measure.min_timed_steps=2", "--set", "guard.steps=1",
                 "--set", "guard.batch_size=2"])
    out = capsys.readouterr().out
    assert code == 0, out
    trials = _study(workdir, "cpu_train").get_trials()
    assert len(trials) == 2
    assert trials[0].user_attrs[st.KNOBS]["batch_size"] == 128  # the published baseline


def test_a_config_proposed_again_is_reused_and_not_counted(ray_local, workdir: Path,
                                                             capsys) -> None:
    """The budget is for measurements: a re-proposed config costs no trial of it; when the
    sampler only proposes measured configs, the space is spent and the search stops."""
    space = workdir.parent / "two.yaml"
    space.write_text("""
study: two
workload: {name: tiny_cnn, options: {image_size: 8}}
knobs: {batch_size: [8, 16]}
baseline: {batch_size: 8}
budget: {trials: 4}
measure: {warmup_steps: 1, timed_steps: 2, min_timed_steps: 2}
guard: {steps: 1, batch_size: 8}
sampler: {name: random, seed: 0, start: sampler}
""", encoding="utf-8")
    assert main(["search", "--space", str(space)]) == 0
    out = capsys.readouterr().out
    trials = _study(workdir, "two").get_trials()
    measured = [t for t in trials if st.DUPLICATE_OF not in t.user_attrs]
    reused = [t for t in trials if st.DUPLICATE_OF in t.user_attrs]
    assert len(measured) == 2  # both configs, each once
    assert len(reused) == 10 and "not counted against the budget" in out
    assert "the space looks exhausted; no new trials" in out


def test_configs_that_cannot_run_here_cost_no_trial_of_the_budget(ray_local, workdir: Path,
                                                                  capsys) -> None:
    """The budget is for measurements (issue 23): a choice this machine cannot run (no GPU),
    refused by its trial process or skipped once known, never takes a trial of it."""
    space = workdir.parent / "gpu_less.yaml"
    space.write_text("""
study: gpu_less
workload: {name: tiny_cnn, options: {image_size: 8}}
knobs: {batch_size: [8, 16, 32], device: [cpu, cuda]}
baseline: {batch_size: 8, device: cpu}
budget: {trials: 3}
cost: {cpu: {price_per_hour: 0.357}, cuda: {price_per_hour: 1.212}}
measure: {warmup_steps: 1, timed_steps: 2, min_timed_steps: 2, max_cv: 1.0}
guard: {steps: 1, batch_size: 8}
sampler: {name: random, seed: 0, start: sampler, priors: false}
try_first: [{device: cuda}, {device: cuda, batch_size: 16}]
""", encoding="utf-8")
    assert main(["search", "--space", str(space)]) == 0
    out = capsys.readouterr().out
    trials = _study(workdir, "gpu_less").get_trials()
    measured = [t for t in trials if t.user_attrs.get(st.STATUS) == "ok"
                and st.DUPLICATE_OF not in t.user_attrs]
    unsupported = [t for t in trials if t.user_attrs.get(st.STATUS) == "unsupported"]
    assert len(measured) == 3, out  # the whole budget measured configs
    assert len(unsupported) >= 2 and all(t.user_attrs[st.KNOBS]["device"] == "cuda"
                                         for t in unsupported)
    assert "not counted against the budget" in out


def test_a_time_budget_alone_runs_until_its_time_is_used(ray_local, workdir: Path,
                                                         capsys) -> None:
    """--timeout without --trials: the time is the budget, not the space's trial count; the
    best configs are confirmed as the time runs out."""
    space = workdir.parent / "timed.yaml"
    space.write_text("""
study: timed
workload: {name: tiny_cnn, options: {image_size: 8}}
knobs: {batch_size: [4, 8, 16, 32, 64], memory_format: [contiguous, channels_last],
        num_workers: [0, 1]}
baseline: {batch_size: 8}
budget: {trials: 2}
measure: {warmup_steps: 1, timed_steps: 2, min_timed_steps: 2, max_cv: 1.0}
guard: {steps: 1, batch_size: 8}
sampler: {name: random, seed: 0, start: sampler, priors: false}
""", encoding="utf-8")
    started = time.monotonic()  # one round of confirmation: two trials, not six
    assert main(["search", "--space", str(space), "--timeout", "20",
                 "--set", "budget.confirm_rounds=1"]) == 0
    out = capsys.readouterr().out
    assert "trials until the time budget of 20s is used or the space is exhausted" in out
    assert "time budget of 20s reached: no new trials" in out
    assert time.monotonic() - started >= 20
    trials = _study(workdir, "timed").get_trials()
    assert len([t for t in trials if st.DUPLICATE_OF not in t.user_attrs]) > 2, out
    assert "confirming the best 2 configs" in out, out
    assert any(t.user_attrs.get(st.ROLE) == st.CONFIRM for t in trials)
