"""The drift sentinel (issue 23) on real Optuna storage (in memory): the baseline config
measured again every few trials; a sentinel off by more than the tolerance flags its window,
queues the window's configs again, and the ranking prefers their steady measurements; and a
whole search on a machine that slows for a while."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import SPACES
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.cli import main
from tuner.driver.search.console import Console
from tuner.driver.search.sentinel import Sentinel
from tuner.driver.space import load_space


def _add(study: optuna.Study, batch: int, speed: float, role: str) -> None:
    study.add_trial(optuna.trial.create_trial(
        value=speed, params={"batch_size": batch},
        distributions={"batch_size": optuna.distributions.CategoricalDistribution([16, 64, 256])},
        user_attrs={st.ROLE: role, st.STATUS: "ok", st.KNOBS: {"batch_size": batch},
                    st.METRICS: {mx.SAMPLES_PER_SEC: speed}}))


def _sentinel(lines: list[str]) -> tuple[optuna.Study, Sentinel]:
    space = load_space(SPACES / "quick_train.yaml", ["budget.sentinel_every=2",
                                                     "knobs={batch_size: [16, 64, 256]}",
                                                     "baseline={batch_size: 16}"])
    study = optuna.create_study(direction="maximize")
    return study, Sentinel(study, space, Console(lines.append, "USD"), None)


def test_a_sentinel_is_due_after_every_few_measured_trials() -> None:
    lines: list[str] = []
    study, sentinel = _sentinel(lines)
    _add(study, 16, 10.0, st.BASELINE)
    _add(study, 64, 20.0, "sweep")
    sentinel.queue_if_due()
    assert not study.get_trials(states=(TrialState.WAITING,))  # one trial since: not yet
    _add(study, 256, 25.0, "sweep")
    sentinel.queue_if_due()
    [queued] = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs[st.ROLE] == st.SENTINEL
    assert queued.system_attrs["fixed_params"] == {"batch_size": 16}


def test_a_drifted_window_is_flagged_measured_again_and_superseded() -> None:
    lines: list[str] = []
    study, sentinel = _sentinel(lines)
    _add(study, 16, 10.0, st.BASELINE)
    _add(study, 64, 20.0, "sweep")  # measured while the machine ran fast
    _add(study, 256, 30.0, "sweep")
    _add(study, 16, 14.0, st.SENTINEL)  # the baseline config at 1.4x: the machine drifted
    sentinel.judge(3)
    assert study.user_attrs[st.DRIFT] == {"1": 1.4, "2": 1.4, "3": 1.4}
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [(t.user_attrs[st.ROLE], t.system_attrs["fixed_params"]["batch_size"])
            for t in waiting] == [(st.REMEASURE, 64), (st.REMEASURE, 256), (st.SENTINEL, 16)]
    assert "the machine drifted; trial(s) 1, 2 were measured in that window" in lines[-1]

    # until measured again, a drifted trial still ranks; once its config has a steady
    # measurement, that one does
    assert [row.number for row in rk.ranked(rk.rows(study), "samples_per_sec")] == [2, 1, 0]
    _add(study, 64, 16.0, st.REMEASURE)
    _add(study, 256, 12.0, st.REMEASURE)
    ranked = rk.ranked(rk.rows(study), "samples_per_sec")
    assert [row.number for row in ranked] == [7, 8, 0]  # (4-6 wait in the queue)
    table = rp.format_table(rk.rows(study), "samples_per_sec")
    assert "machine drift: the baseline config re-measured 1 time(s) at 1.40x (trial 3)" in table
    assert "measured again after drift: trial(s) 7, 8" in table


def test_a_sentinel_within_the_tolerance_flags_nothing() -> None:
    lines: list[str] = []
    study, sentinel = _sentinel(lines)
    _add(study, 16, 10.0, st.BASELINE)
    _add(study, 64, 20.0, "sweep")
    _add(study, 16, 10.9, st.SENTINEL)
    sentinel.judge(2)
    assert study.user_attrs[st.DRIFT] == {"2": 1.09}
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert "within 15%: no drift" in lines[-1]


@pytest.mark.slow
def test_a_search_on_a_machine_that_slows_for_a_while(ray_local, workdir: Path, capsys) -> None:
    """A whole search whose machine runs at half speed for two trial processes (the second
    candidate and the sentinel after it): the sentinel sees it, the window is measured again
    once the machine is back, and the ranking, the table and MLflow say so."""
    marks = workdir.parent / "processes.txt"
    space = workdir.parent / "drifting.yaml"
    space.write_text(f"""
study: drifting
workload: {{name: "faulty_workloads:drifting",
           options: {{image_size: 8, marks: "{marks}", slow: [2, 3], step_s: 0.05}}}}
knobs: {{batch_size: {{low: 8, high: 64}}}}  # wide: no config is drawn twice
baseline: {{batch_size: 8}}
budget: {{trials: 4, sentinel_every: 2}}
measure: {{warmup_steps: 1, timed_steps: 4, min_timed_steps: 4, max_cv: 1.0}}
guard: {{steps: 1, batch_size: 8}}
sampler: {{name: random, seed: 0, start: sampler, priors: false}}
""", encoding="utf-8")
    assert main(["search", "--space", str(space)]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="drifting", storage=f"sqlite:///{workdir / 'optuna.db'}")
    roles = [t.user_attrs.get(st.ROLE, "candidate") for t in study.get_trials()]
    # baseline, 2 candidates (the second slowed), the sentinel (slowed): drift; the two again,
    # the sentinel again (steady), the budget's third candidate
    assert roles[:7] == [st.BASELINE, roles[1], roles[2], st.SENTINEL, st.REMEASURE,
                         st.REMEASURE, st.SENTINEL], roles
    assert len(roles) == 8, roles
    assert "the machine drifted; trial(s) 1, 2 were measured in that window" in out, out
    drift = study.user_attrs[st.DRIFT]
    assert 0.35 < drift["3"] < 0.65 and 0.85 < drift["6"] < 1.15, drift
    ranked = rk.ranked(rk.rows(study), "samples_per_sec")
    assert {row.number for row in ranked} == {0, 4, 5, 7}  # not the drifted 1, 2
    assert "machine drift: the baseline config re-measured 2 time(s)" in out
    assert "measured again after drift: trial(s) 4, 5" in out
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    [parent] = [run for run in client.search_runs(
        [client.get_experiment_by_name("drifting").experiment_id])
        if run.data.tags.get("tuner.kind") == "search"]
    assert parent.data.metrics["drift_min"] == pytest.approx(drift["3"])
