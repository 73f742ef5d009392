"""The drift sentinel (issue 23) on real Optuna storage (in memory): the baseline config
measured again every few trials; a sentinel off by more than the tolerance flags its window,
queues the window's configs again, and the ranking prefers their steady measurements."""

from __future__ import annotations

import optuna
from conftest import SPACES
from optuna.trial import TrialState

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
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
