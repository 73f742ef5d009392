"""The search's MLflow records, through outages: a write that fails never stops the search; the
trials MLflow missed are written when the server answers again, or by the next search.

The Optuna storage is the record of truth: every MLflow record is written from what it holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tuner.driver import envvars
from tuner.driver import ranking as rk
from tuner.driver import recovery as rc
from tuner.driver.search.console import Console, duration
from tuner.driver.stores import Locations, redact
from tuner.errors import UserError


def connect_tracker(where: Locations, experiment: str, study_name: str) -> Any:
    """The MLflow tracker; any failure here is a bad --tracking-uri (one line, exit 2)."""
    from tuner.driver.tracking import Tracker

    try:
        return Tracker(where.tracking_uri, experiment, where.artifact_root, study_name)
    except Exception as error:  # noqa: BLE001 - any failure here is a bad --tracking-uri
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise UserError(f"--tracking-uri: cannot use MLflow at {redact(where.tracking_uri)}: "
                        f"{type(error).__name__}: {first} (start the server, or leave the "
                        "flag out for a local sqlite:///tuner-runs/mlflow.db)") from None


class Records:
    """MLflow writes that may fail, and what they missed."""

    def __init__(self, tracker: Any, console: Console) -> None:
        self.tracker = tracker
        self.console = console
        # how often to retry writes that failed while the tracking server was unreachable, and
        # at the end how long to wait for it to answer again before giving up
        self.retry_s = envvars.seconds("TUNER_MLFLOW_RETRY_S")
        self.final_wait_s = envvars.seconds("TUNER_MLFLOW_WAIT_S")
        self.unlogged: set[int] = set()  # finished trials MLflow has not heard of yet
        self.down_since: float | None = None
        self.last_failure = 0.0

    def call(self, write: Callable[..., Any], *args: Any, force: bool = False) -> Any:
        """`write(*args)`, or None when MLflow is down (says so once per outage); True for a
        write that returns nothing."""
        if (not force and self.down_since is not None
                and time.monotonic() - self.last_failure < self.retry_s):
            return None  # down a moment ago: do not wait on it again for every trial
        try:
            result = write(*args)
        except Exception as error:  # noqa: BLE001 - any tracking failure is an outage
            self.last_failure = time.monotonic()
            if self.down_since is None:
                self.down_since = time.monotonic()
                first = (str(error).strip().splitlines() or [""])[0][:160]
                self.console.out(
                    f"warning: MLflow unreachable ({type(error).__name__}: {first}); the "
                    "search goes on, the Optuna storage keeps every result, and MLflow gets "
                    "them when it answers again")
            return None
        if self.down_since is not None:
            self.console.out(
                f"MLflow answers again after {duration(time.monotonic() - self.down_since)}")
            self.down_since = None
        return result if result is not None else True

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def start_trial(self, trial: Any, knobs: dict[str, Any], tags: dict[str, str],
                    run_id_attr: str) -> str | None:
        """The trial's MLflow run, its id kept in the trial (None while MLflow is down)."""
        run_id = self.call(self.tracker.start_trial, trial.number, knobs, tags)
        if run_id is not None:
            trial.set_user_attr(run_id_attr, run_id)
        return run_id

    def record_trial(self, row: rk.Row) -> None:
        self.unlogged.add(row.number)
        if self.call(self.tracker.record_trial, row) is not None:
            self.unlogged.discard(row.number)

    def retry_due(self) -> bool:
        return bool(self.unlogged) and time.monotonic() - self.last_failure >= self.retry_s

    def sync(self, rows: list[rk.Row], only: set[int] | None) -> None:
        """Write the finished trials MLflow lacks (`only` these, or all)."""
        from tuner.driver.tracking import sync_trials

        written = self.call(sync_trials, self.tracker, rows, only, force=True)
        if written is None:
            return
        self.unlogged -= set(only) if only is not None else set(self.unlogged)
        if isinstance(written, list) and written:
            self.console.out(
                f"MLflow brought up to date: trial(s) {', '.join(map(str, written))} logged")

    def close_dead_searches(self, study: Any, study_name: str, grace_s: float) -> None:
        """MLflow parent runs of searches of this study that were killed: closed as FAILED."""
        searches = self.call(self.tracker.running_searches, study_name)
        for run_id, started_s in searches if isinstance(searches, list) else []:
            if not rc.search_is_dead(study, run_id, started_s, grace_s):
                continue  # a live search of this study, elsewhere
            closed = self.call(self.tracker.close_run, run_id, "FAILED",
                               {"tuner.end": "its search stopped without closing this run "
                                             "(killed, or MLflow was unreachable)"})
            if closed is not None:
                rc.mark_session_ended(study, run_id, "closed by a later search")
                self.console.out(
                    f"closed the MLflow run of an earlier search that was killed ({run_id})")

    def final_sync(self, study: Any, where: Locations, parent_closed: bool,
                   close_parent: Callable[[], bool]) -> str | None:
        """At the end: bring MLflow up to date, waiting a little for a server that is down.
        Returns what MLflow still lacks, in words (the CLI then exits with 3), or None."""
        deadline = time.monotonic() + self.final_wait_s
        while True:
            self.sync(rk.rows(study), only=None)
            if not parent_closed and not self.down:
                parent_closed = close_parent()
                if parent_closed:
                    rc.mark_session_ended(study, self.tracker.parent_run_id or "", "closed")
            if (not self.down and parent_closed) or time.monotonic() >= deadline:
                break
            time.sleep(5)
        missing = []
        if self.unlogged:
            missing.append(f"trial(s) {', '.join(map(str, sorted(self.unlogged)))}")
        if not parent_closed:
            missing.append("this search's summary run")
        if not missing:
            return None
        return (f"MLflow at {redact(where.tracking_uri)} is unreachable: "
                f"{' and '.join(missing)} missing there; the Optuna storage "
                f"({redact(where.storage)}) holds every trial. "
                "Run the same command again when MLflow is back to log them")
