"""The study storage, patient with faults it can outlive: a SQLite file locked past its busy
timeout, a disk that filled up, a PostgreSQL server restarting. Each storage call is one
transaction (Optuna rolls back a failed one), so a call that failed that way is made again,
with backoff, for up to TUNER_STORAGE_RETRY_S; then the search stops with one line
(`StorageFailed`) and what it left running is re-run by the next search of the study.

Heartbeats are not retried here: the heartbeat thread beats again at its next interval.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import RDBStorage
from sqlalchemy import exc as sa

from tuner.driver import envvars
from tuner.errors import SearchAborted, one_line

SQLITE_BUSY_S = 60  # how long a SQLite call waits for another process's lock before failing
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)  # between tries of a failed call; then every 15 s
RETRY_ENV = "TUNER_STORAGE_RETRY_S"

# the calls a search makes; each is a transaction of its own in Optuna's RDBStorage (a name
# Optuna no longer has fails at import, in every test, not silently)
RETRIED = (
    "create_new_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs",
    "get_all_studies", "create_new_trial", "set_trial_param", "get_trial_param",
    "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial",
    "get_all_trials", "get_best_trial", "_get_stale_trial_ids",
    # what Optuna's cache in front of the storage calls instead of the public names
    "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials",
)


class StorageFailed(SearchAborted):
    """The study storage kept failing past the patience: the search stops (exit code 1)."""


def transient(error: BaseException) -> bool:
    """A fault that may pass: the database was locked, full, unreachable or restarting (not bad
    data, not a finished trial)."""
    cause = error.__cause__ if isinstance(error, optuna.exceptions.StorageInternalError) \
        else error
    if isinstance(cause, sa.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, sa.OperationalError | sa.InterfaceError | sa.TimeoutError)


def first_line(error: BaseException) -> str:
    """The database's own words (`orig` of a SQLAlchemy error), on one bounded line."""
    cause = error.__cause__ if isinstance(error, optuna.exceptions.StorageInternalError) \
        else error
    text = str(getattr(cause, "orig", None) or cause).strip().splitlines() or [""]
    return f"{type(getattr(cause, 'orig', None) or cause).__name__}: {one_line(text[0])[:200]}"


class PatientStorage(RDBStorage):
    """Optuna's RDBStorage whose calls outlive a passing fault. `say` hears one line when an
    outage starts and one when it ends; after it gave up once, calls are tried once (the
    search is stopping: closing what it can must not wait again)."""

    def __init__(self, url: str, shown_url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.shown_url = shown_url  # redacted: for messages
        self.patience_s = envvars.seconds(RETRY_ENV)
        self.say: Callable[[str], None] = lambda line: None
        self.outage_since: float | None = None
        self.gave_up = False
        self._outage_lock = threading.Lock()

    def _patiently(self, name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        tries = 0
        while True:
            try:
                value = call(*args, **kwargs)
            except Exception as error:
                if not transient(error):
                    raise
                tries += 1
                waited_s = self._failed(error)
                if self.gave_up or waited_s >= self.patience_s:
                    self.gave_up = True
                    raise StorageFailed(
                        f"the study storage {self.shown_url} kept failing for {waited_s:.0f} s "
                        f"({first_line(error)}, in {name}); fix it (free disk space, end the "
                        "process holding the lock, start the server) and run the same command "
                        "again: what this search left running is run again then") from None
                time.sleep(min(BACKOFF_S[min(tries, len(BACKOFF_S)) - 1],
                               max(0.0, self.patience_s - waited_s)))
                continue
            self._answered()
            return value

    def _failed(self, error: BaseException) -> float:
        """Seconds this outage has lasted; its first failure is said once."""
        with self._outage_lock:
            now = time.monotonic()
            if self.outage_since is None:
                self.outage_since = now
                self.say(f"warning: the study storage is failing ({first_line(error)}); "
                         f"retrying for up to {self.patience_s:g} s ({RETRY_ENV})")
            return now - self.outage_since

    def _answered(self) -> None:
        if self.outage_since is None:
            return
        with self._outage_lock:
            if self.outage_since is not None:
                self.say(f"the study storage answers again, after "
                         f"{time.monotonic() - self.outage_since:.0f} s")
            self.outage_since = None
            self.gave_up = False


def _patient_method(name: str) -> Callable[..., Any]:
    plain = getattr(RDBStorage, name)

    def method(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return self._patiently(name, plain.__get__(self), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = plain.__doc__
    return method


for _name in RETRIED:
    setattr(PatientStorage, _name, _patient_method(_name))


def open_storage(url: str, heartbeat_s: int, grace_s: int, shown_url: str = "",
                 stale_callback: Any = None) -> PatientStorage:
    """The study storage with heartbeats on, so a killed search's trials are found and retried.
    SQLite waits for a lock instead of failing at once, so two searches can share a file; a
    server's pooled connections are checked before use, so a restarted server is reconnected."""
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_BUSY_S}} if url.startswith("sqlite")
        else {"pool_pre_ping": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return PatientStorage(url, shown_url or "(storage)", engine_kwargs=engine_kwargs,
                              heartbeat_interval=heartbeat_s, grace_period=grace_s,
                              heartbeat_stale_trial_callback=stale_callback)
