"""Surviving a killed search: heartbeats in the study storage for every running trial and for
the search itself, and what a resumed search does with what a dead one left running.

Optuna's own mechanism does the work: the storage is opened with a heartbeat interval and a
grace period; a trial whose heartbeat stops is failed by `fail_stale_trials` and re-queued by
Optuna's `RetryHeartbeatStaleTrialCallback`. The tuner records the heartbeats itself (from a
thread), because it drives trials with ask/tell rather than `Study.optimize`.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tuner.driver import storage as sg
from tuner.driver import study as st
from tuner.errors import UserError
from tuner.trial import LOST

INTERRUPTED = "interrupted"  # status of a trial whose search stopped while it ran
MAX_RETRIES = 3  # a config whose trial keeps outliving its searches is given up after this
SESSION_PREFIX = "search:"  # study user attr per search invocation: its heartbeat
STARTUP_S = 60  # most a search takes from creating its MLflow run to its first heartbeat


def open_storage(url: str, heartbeat_s: int, grace_s: int,
                 shown_url: str = "") -> sg.PatientStorage:
    """The study storage (patient with passing faults), its heartbeats on and a trial whose
    heartbeat stopped re-queued."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        requeue = RequeueInterrupted(MAX_RETRIES)
    return sg.open_storage(url, heartbeat_s, grace_s, shown_url, requeue)


class RequeueInterrupted(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry callback, passing on only the trial's role: the new trial gets its own
    MLflow run and measurements, never the dead one's."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fresh = copy.copy(trial)
        fresh.user_attrs = {key: value for key, value in trial.user_attrs.items()
                            if key == st.ROLE}
        super().__call__(study, fresh)


def is_interrupted(trial: FrozenTrial) -> bool:
    """Failed because its search stopped or its Ray node was lost, not because of its config:
    a FAIL the tuner did not write itself (the stale-trial check), or one it wrote as
    interrupted or lost. Such a trial is re-queued and does not count against the budget."""
    if trial.state != TrialState.FAIL:
        return False
    return (st.recorded_status(trial) or INTERRUPTED) in (INTERRUPTED, LOST)


def retry_of(trial: FrozenTrial) -> int | None:
    return trial.system_attrs.get("failed_trial")  # what retried_trial_number reads


def requeue(study: optuna.Study, trial_number: int) -> bool:
    """Re-queue a trial this search itself interrupted (SIGTERM) or lost with its node, as the
    stale check would. False when its config has been re-run MAX_RETRIES times already;
    UpdateFinishedTrialError when the stale check closed (and so re-queued) it first: a retry
    is queued once."""
    frozen = study.get_trials(deepcopy=False)[trial_number]
    if frozen.state != TrialState.RUNNING:  # failed as stale meanwhile: re-queued by that check
        raise optuna.exceptions.UpdateFinishedTrialError(
            f"trial {trial_number} was closed meanwhile ({frozen.state.name})")
    if len(frozen.system_attrs.get("retry_history", [])) >= MAX_RETRIES:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RequeueInterrupted(MAX_RETRIES)(study, frozen)
    return True


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def ask(study: optuna.Study) -> optuna.Trial:
    """`study.ask()`, its heartbeat recorded at once so a kill right after cannot hide it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    return trial


def settle_running(study: optuna.Study, heartbeat_s: int, grace_s: int,
                   out: Callable[[str], None]) -> None:
    """Before a resumed search starts: trials left RUNNING belong either to a search that was
    killed (their heartbeat has stopped: failed and re-queued) or to one still running on this
    study (their heartbeat goes on: left alone). Telling them apart takes one grace period."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return
    _beat_for_the_silent(study)
    out(f"trials {_numbers(running)} were running when this study was last used: waiting up to "
        f"{grace_s + heartbeat_s} s to tell a killed search from a live one")
    deadline = time.monotonic() + grace_s + heartbeat_s
    while True:
        fail_stale(study)
        still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        still &= running
        if not still or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    requeued = running - still
    if requeued:
        out(f"trials {_numbers(requeued)} were interrupted (their search stopped): re-queued")
    if still:
        out(f"trials {_numbers(still)} are still heartbeating: another search is running them")


def _beat_for_the_silent(study: optuna.Study) -> None:
    """A RUNNING trial with no heartbeat at all (its search died between asking for it and
    its first beat, or it was made without heartbeats) is invisible to Optuna's stale check,
    and a baseline in that state would keep every later search waiting: one beat now makes it
    go stale after the grace like any other, unless its search is alive and beats on."""
    import sqlalchemy

    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # under Optuna's cache wrapper
    engine = getattr(backend, "engine", None)
    if engine is None:
        return
    with engine.connect() as connection:
        beating = {row[0] for row in connection.execute(
            sqlalchemy.text("SELECT trial_id FROM trial_heartbeats"))}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id not in beating:
            storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]


def _numbers(numbers: set[int]) -> str:
    return ", ".join(str(n) for n in sorted(numbers))


class Heartbeats:
    """A thread that records the heartbeat of every running trial of this search, and of the
    search itself (its session attr), every `interval_s`. A beat that fails is tried at the
    next interval; `say` hears the first failure of a run of them and the recovery."""

    def __init__(self, study: optuna.Study, session: str, interval_s: int, grace_s: int,
                 say: Callable[[str], None] = print) -> None:
        self.study = study
        self.session = session
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.say = say
        self.trial_ids: dict[int, int] = {}  # trial number -> trial id
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tuner-heartbeats", daemon=True)
        self.failing = 0  # beats failed in a row

    def start(self) -> None:
        self._beat_session(ended=False)
        self.thread.start()

    def add(self, trial: optuna.Trial) -> None:
        with self.lock:
            self.trial_ids[trial.number] = trial._trial_id

    def remove(self, trial_number: int) -> None:
        with self.lock:
            self.trial_ids.pop(trial_number, None)

    def stop(self, ended: bool = True) -> None:
        """Stop beating; `ended=False` leaves the session for a later search to close."""
        self.stop_event.set()
        self.thread.join(timeout=30)
        try:
            self._beat_session(ended=ended, beat=time.time() if ended else 0.0)
        except Exception:  # noqa: BLE001 - a later search closes this session by its age
            pass

    def beat(self) -> None:
        """Every running trial's heartbeat now (the driver's own trials, before it looks for
        stale ones: after a storage outage they are not its own victims)."""
        with self.lock:
            ids = list(self.trial_ids.values())
        storage = self.study._storage
        try:
            for trial_id in ids:
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001 - said once; the next beat tries again
            self._failed(error)
            return
        if self.failing:
            self.failing = 0
            self.say("heartbeats are written again")

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.beat()
            if self.failing:
                continue
            try:
                self._beat_session(ended=False)
            except Exception as error:  # noqa: BLE001 - said once; the next beat tries again
                self._failed(error)

    def _failed(self, error: BaseException) -> None:
        self.failing += 1
        if self.failing == 1:
            self.say(f"warning: heartbeats cannot be written ({sg.first_line(error)}); "
                     f"if this lasts past {self.grace_s} s, trials running now are failed as "
                     "stale and run again")

    def _beat_session(self, ended: bool, beat: float | None = None) -> None:
        self.study.set_user_attr(SESSION_PREFIX + self.session, {
            "host": socket.gethostname(), "pid": os.getpid(),
            "beat": time.time() if beat is None else beat, "ended": ended})


def search_is_dead(study: optuna.Study, run_id: str, started_s: float, grace_s: float) -> bool:
    """Whether the search that owns this still-RUNNING MLflow parent run is gone: its session
    heartbeat stopped without it ending, or it never wrote one (killed while starting)."""
    session = study.user_attrs.get(SESSION_PREFIX + run_id)
    now = time.time()
    if not isinstance(session, dict):
        return now - started_s > grace_s + STARTUP_S
    return not session.get("ended") and now - float(session.get("beat", 0)) > grace_s


def mark_session_ended(study: optuna.Study, session: str, how: str) -> None:
    attrs: dict[str, Any] = dict(study.user_attrs.get(SESSION_PREFIX + session, {}))
    attrs.update({"ended": True, "how": how})
    study.set_user_attr(SESSION_PREFIX + session, attrs)


def open_study(where: Any, space: Any, study_name: str,
               say: Callable[[str], None] = print) -> tuple[Any, Any]:
    """The study and its storage (heartbeats on); a storage that cannot be opened is a bad
    --storage: one line, exit 2. `say` hears the storage's outages."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.driver.stores import redact

    try:
        opened = open_storage(where.storage, space.trial.heartbeat_s, space.trial.grace_s,
                              redact(where.storage))
        opened.say = say  # from here on, a failing storage is waited for, with a line
        study = st.open_study(space, opened, study_name)
    except (SQLAlchemyError, ImportError, OSError) as error:
        first = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
        raise UserError(f"--storage: cannot open the study storage {redact(where.storage)}: "
                        f"{type(error).__name__}: {first[:200]}") from None
    return study, opened
