"""Closing trials: tell Optuna (the record of truth) first, then MLflow; a reused config, a
skipped one, a trial re-queued because its search or its node stopped.
"""

from __future__ import annotations

from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import recovery as rc
from tuner.driver import study as st
from tuner.driver.search import admit as ad
from tuner.driver.search import results as rs
from tuner.driver.search.console import Console
from tuner.driver.search.records import Records
from tuner.driver.space import Space
from tuner.trial import OOM, TrialResult


class Teller:
    """Closes the search's trials in the study and in MLflow."""

    def __init__(self, study: Any, space: Space, records: Records, heartbeats: Any,
                 console: Console) -> None:
        self.study = study
        self.space = space
        self.records = records
        self.heartbeats = heartbeats
        self.console = console

    def reuse(self, trial: Any, earlier: Any, counter: str) -> None:
        """Same knobs as a completed trial: tell its result again instead of re-measuring."""
        for name in (st.METRICS, st.STATUS, st.REASON, st.CONSTRAINT, st.INFO):
            if name in earlier.user_attrs:
                trial.set_user_attr(name, earlier.user_attrs[name])
        trial.set_user_attr(st.DUPLICATE_OF, earlier.number)
        trial.set_constraint(st.CONSTRAINT, float(earlier.user_attrs.get(st.CONSTRAINT, 0.0)))
        self.records.start_trial(trial, trial.user_attrs[st.KNOBS], {
            "tuner.role": "candidate", "tuner.duplicate_of": str(earlier.number)},
            st.MLFLOW_RUN_ID)
        self.close(trial.number, values=earlier.values)
        self.console.detail(f"{counter} trial {trial.number} has the config of trial "
                            f"{earlier.number}: result reused, nothing re-measured (not "
                            "counted against the budget)")

    def skip(self, trial: Any, role: str, skip: ad.Skip, counter: str) -> None:
        """A config known not to run (a choice found unsupported, a batch size known to run out
        of memory, a GPU the cluster lacks): skipped without starting a process."""
        trial.set_user_attr(st.STATUS, skip.status)
        trial.set_user_attr(st.REASON, skip.reason)
        trial.set_user_attr(st.SKIPPED, True)
        if skip.status == OOM:
            trial.set_constraint(st.CONSTRAINT, 1.0)  # infeasible: the sampler moves away
        self.records.start_trial(trial, trial.user_attrs[st.KNOBS], {"tuner.role": role},
                                 st.MLFLOW_RUN_ID)
        self.close(trial.number, state=TrialState.PRUNED)
        self.console.detail(f"{counter} trial {trial.number} skipped, not started (not counted "
                            f"against the budget): {skip.reason}")

    def record(self, running: rs.Running, verdict: rs.Interpreted) -> None:
        """The result's attributes on the trial, before it is closed; raises
        UpdateFinishedTrialError when the trial was failed as stale meanwhile."""
        for name, attr in verdict.attrs.items():
            running.trial.set_user_attr(name, attr)
        if verdict.constraint is not None:
            running.trial.set_constraint(st.CONSTRAINT, verdict.constraint)
        if verdict.pruned_at is not None:
            running.trial.report(*verdict.pruned_at)
        if verdict.run_again_with_s is not None:  # before closing: then it is not counted
            running.trial.set_user_attr(st.RUN_AGAIN, verdict.run_again_with_s)

    def stale(self, trial_number: int, result: TrialResult) -> None:
        """A result for a trial the stale check failed while this driver was paused (Ctrl-Z, a
        suspended machine, a storage stalled past the heartbeat grace): the check re-queued its
        config, so it is measured again; the search goes on."""
        self.heartbeats.remove(trial_number)
        figure = (f" ({result.metrics[mx.SAMPLES_PER_SEC]:,.2f} samples/s)"
                  if mx.SAMPLES_PER_SEC in result.metrics else "")
        self.console.out(f"warning: trial {trial_number} was failed as stale meanwhile (no "
                         f"heartbeat for {self.space.trial.grace_s} s: this driver was paused "
                         "or the storage stalled); its result" + figure + " is not kept and its "
                         "config is re-queued, to be measured again")

    def close(self, trial_number: int, values: list[float] | None = None,
               state: TrialState | None = None) -> None:
        """Tell Optuna, then write the MLflow record from what the storage now holds. Optuna
        first: it is the record of truth, and a record MLflow misses is written later."""
        try:
            self.study.tell(trial_number, values=values, state=state)
        except UpdateFinishedTrialError:
            self.console.out(f"warning: trial {trial_number} was failed as stale meanwhile (no "
                             f"heartbeat for {self.space.trial.grace_s} s: storage too slow?); "
                             "it is re-queued")
        self.heartbeats.remove(trial_number)
        self.records.record_trial(rk.row_of(self.study.get_trials(deepcopy=False)[trial_number]))

    def abandon(self, running: dict[int, rs.Running], reason: str) -> None:
        """Interrupted (Ctrl-C, SIGTERM): close the running trials as interrupted, re-queued
        for the next search of this study, and close their MLflow runs as FAILED."""
        for trial_number, trial_running in list(running.items()):
            try:
                trial_running.trial.set_user_attr(st.STATUS, rc.INTERRUPTED)
                self.fail_and_requeue(trial_running.trial, reason, "")
            except Exception as error:  # noqa: BLE001 - best effort while shutting down
                self.console.out(f"warning: could not close trial {trial_number}: {error}")
        running.clear()

    def fail_and_requeue(self, trial: Any, reason: str, then: str) -> tuple[bool, str]:
        """A trial that did nothing wrong (its search stopped, its node was lost): its config
        queued again, unless it has been re-run MAX_RETRIES times already; then the trial
        closed as FAIL with the reason saying which. Returns (re-queued, that reason)."""
        requeued = rc.requeue(self.study, trial.number)
        reason += (f"; re-queued{then}" if requeued else
                   f"; not re-queued: its config was cut short {rc.MAX_RETRIES + 1} times")
        trial.set_user_attr(st.REASON, reason)
        self.close(trial.number, state=TrialState.FAIL)
        return requeued, reason
