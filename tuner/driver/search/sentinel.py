"""The drift sentinel: the baseline config measured again every few trials, so a search that
measures configs one after another, minutes apart, can tell the configs from the machine's
mood (a shared VM here measured one loop at 60 and then 215-227 samples/s ten minutes apart).

A sentinel off the baseline's first figure by more than `measure.drift_tolerance` marks the
trials measured since the previous one (the window the machine drifted in, as far as anyone
can tell) as drifted, and queues their configs again; a sentinel follows the re-measurements.
A drifted trial leaves the ranking once its config has a measurement that did not drift; the
report says how far the machine moved (`report.drift_lines`).
"""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from tuner import metrics as mx
from tuner.driver import study as st
from tuner.driver.search.console import Console
from tuner.driver.space import Space

ROLES = (st.SENTINEL, st.REMEASURE)  # trials of the sentinel's own: not in the trial budget


class Sentinel:
    """Queues sentinels and judges them, for one search of a study."""

    def __init__(self, study: Any, space: Space, console: Console,
                 trials_budget: int | None) -> None:
        self.study = study
        self.space = space
        self.console = console
        self.every = space.budget.sentinel_interval(trials_budget)

    def queue_if_due(self) -> None:
        """The baseline config again once `every` trials were measured since the last
        sentinel (or the baseline), when nothing else waits in the queue."""
        if not self.every or self.study.get_trials(deepcopy=False,
                                                   states=(TrialState.WAITING,)):
            return
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.RUNNING and t.user_attrs.get(st.ROLE) == st.SENTINEL
               for t in trials):
            return
        since = _since_last_reference(trials)
        if len([t for t in since if t.state == TrialState.COMPLETE]) >= self.every:
            self._queue()

    def _queue(self) -> None:
        st.enqueue_baseline(self.study, self.space, role=st.SENTINEL)

    def judge(self, number: int) -> None:
        """After a sentinel's result: if the machine drifted, flag its window and measure the
        window's configs again (once), with a sentinel after them."""
        trials = self.study.get_trials(deepcopy=False)
        sentinel = trials[number]
        base = st.baseline_trial(self.study)
        if (base is None or sentinel.state != TrialState.COMPLETE
                or sentinel.user_attrs.get(st.ROLE) != st.SENTINEL):
            return
        ratio = (sentinel.user_attrs[st.METRICS][mx.SAMPLES_PER_SEC]
                 / base.user_attrs[st.METRICS][mx.SAMPLES_PER_SEC])
        tolerance = self.space.measure.drift_tolerance
        if abs(ratio - 1) <= tolerance:
            st.remember_drift(self.study, {number: ratio})
            self.console.detail(f"  sentinel trial {number}: the baseline config at "
                                f"{ratio:.2f}x its first measurement, within "
                                f"{tolerance:.0%}: no drift")
            return
        window = [t for t in _since_last_reference(trials[:number])  # pairs judge their own
                  if t.state == TrialState.COMPLETE and t.user_attrs.get(st.ROLE) != st.CONFIRM]
        st.remember_drift(self.study, {number: ratio, **{t.number: ratio for t in window}})
        again = [t for t in window if t.user_attrs.get(st.ROLE) != st.REMEASURE]  # once each
        for trial in again:
            self.study.enqueue_trial(dict(trial.params), user_attrs={
                st.ROLE: st.REMEASURE, st.REMEASURES: trial.number})
        if again:
            self._queue()
        where = (f"trial(s) {', '.join(str(t.number) for t in again)} were measured in that "
                 "window: measured again, then the sentinel again" if again else
                 "nothing left to measure again")
        self.console.out(f"  sentinel trial {number}: the baseline config at {ratio:.2f}x its "
                         f"first measurement (beyond {tolerance:.0%}): the machine drifted; "
                         f"{where}")


def _since_last_reference(trials: list[Any]) -> list[Any]:
    """Finished trials after the newest baseline or sentinel among `trials`."""
    last = max((t.number for t in trials
                if t.user_attrs.get(st.ROLE) in (st.BASELINE, st.SENTINEL)
                and t.state.is_finished()), default=-1)
    return [t for t in trials if t.number > last and t.state.is_finished()
            and t.user_attrs.get(st.ROLE) not in (st.BASELINE, st.SENTINEL)]
