"""Faults of the stores that hold the results, injected for real. The study storage: a SQLite
file locked by another process past its busy timeout, a full filesystem (a small tmpfs), a
PostgreSQL server stopped and started again; a fault that passes within TUNER_STORAGE_RETRY_S
is waited out, said in one line when it starts and one when it ends; one that does not is a
single-line `StorageFailed`. MLflow: a run created whose params write failed (a SQLite trigger
refuses them) is completed later, never left RUNNING beside a second run."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from services import Postgres, postgres_bin

from tuner.driver import recovery as rc
from tuner.driver import storage as sg
from tuner.driver.ranking import row_of
from tuner.driver.tracking import Tracker, sync_trials

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _storage(url: str, said: list[str]) -> tuple[sg.PatientStorage, int]:
    """The search's storage on `url`, with a study and one running trial (its id)."""
    storage = sg.open_storage(url, heartbeat_s=1, grace_s=5, shown_url="the-storage")
    storage.say = said.append
    study = optuna.create_study(study_name="faults", storage=storage)
    return storage, study.ask()._trial_id


def _later(seconds: float, action: object) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()  # type: ignore[operator]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def patience(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sg, "SQLITE_BUSY_S", 1)  # a lock fails after 1 s, not 60
    monkeypatch.setattr(sg, "BACKOFF_S", (0.5,))
    monkeypatch.setenv(sg.RETRY_ENV, "30")
    yield


def _lock(path: Path) -> sqlite3.Connection:
    """Another process's write lock on the file, as a long transaction holds it."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    return other


def test_a_lock_held_past_the_busy_timeout_is_waited_out(tmp_path: Path, patience: None) -> None:
    said: list[str] = []
    storage, trial_id = _storage(f"sqlite:///{tmp_path / 'study.db'}", said)
    other = _lock(tmp_path / "study.db")
    _later(3, lambda: other.execute("COMMIT"))
    storage.set_trial_user_attr(trial_id, "kept", 1)  # waits through three busy timeouts
    assert storage.get_trial(trial_id).user_attrs == {"kept": 1}
    assert said[0].startswith("warning: the study storage is failing (OperationalError: "
                              "database is locked); retrying for up to 30 s")
    assert said[1].startswith("the study storage answers again, after ")
    assert len(said) == 2  # one line for the outage, one for its end


def test_calls_through_optunas_cache_are_patient_too(tmp_path: Path, patience: None) -> None:
    """`study.ask()` and `suggest` reach the storage by private names (`_create_new_trial`,
    `_set_trial_param`) through Optuna's cache: they wait out a lock as well."""
    said: list[str] = []
    storage, _ = _storage(f"sqlite:///{tmp_path / 'study.db'}", said)
    study = optuna.load_study(study_name="faults", storage=storage)
    other = _lock(tmp_path / "study.db")
    _later(3, lambda: other.execute("COMMIT"))
    trial = study.ask()
    trial.suggest_int("batch_size", 8, 64)
    assert len(study.get_trials()) == 2 and said[0].startswith("warning: the study storage")


def test_a_lock_held_past_the_patience_is_one_line(tmp_path: Path, patience: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    storage, trial_id = _storage(f"sqlite:///{tmp_path / 'study.db'}", said)
    storage.patience_s = 2
    other = _lock(tmp_path / "study.db")
    with pytest.raises(sg.StorageFailed) as failed:
        storage.set_trial_user_attr(trial_id, "lost", 1)
    message = str(failed.value)
    assert "\n" not in message and "the study storage the-storage kept failing for " in message
    assert "database is locked, in set_trial_user_attr" in message
    assert "run the same command again" in message
    started = time.monotonic()
    with pytest.raises(sg.StorageFailed):  # gave up: the stopping search does not wait again
        storage.set_trial_user_attr(trial_id, "closing", 1)
    assert time.monotonic() - started < 1.9
    other.execute("COMMIT")
    storage.set_trial_user_attr(trial_id, "back", 1)  # answered: patient again
    assert not storage.gave_up and storage.get_trial(trial_id).user_attrs == {"back": 1}


def test_bad_data_is_not_retried(tmp_path: Path, patience: None) -> None:
    """Only faults that may pass are retried: a finished trial stays an error at once."""
    storage, trial_id = _storage(f"sqlite:///{tmp_path / 'study.db'}", [])
    storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_user_attr(trial_id, "late", 1)


def test_a_trial_the_stale_check_closed_is_not_queued_again(tmp_path: Path) -> None:
    """The stale check failed (and re-queued) a trial while its driver was paused; the driver,
    back, must not queue a second retry of it."""
    storage = rc.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_s=1, grace_s=1)
    study = optuna.create_study(study_name="stale", storage=storage)
    trial = rc.ask(study)
    time.sleep(2.5)
    rc.fail_stale(study)  # as another search of the study would: FAIL, then a retry queued
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        rc.requeue(study, trial.number)
    waiting = study.get_trials(states=[optuna.trial.TrialState.WAITING])
    assert len(waiting) == 1


def test_an_mlflow_run_whose_params_failed_is_completed_not_doubled(tmp_path: Path) -> None:
    """MLflow made the trial's run, then refused its params (a database fault after
    `create_run`): the trial's record later goes to that run, which ends FINISHED with its
    params; no second run, none left RUNNING."""
    tracking = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{tracking}", "faults", None)
    database = sqlite3.connect(tracking)
    database.execute("CREATE TRIGGER refuse BEFORE INSERT ON params "
                     "BEGIN SELECT RAISE(ABORT, 'injected fault'); END")
    database.commit()
    with pytest.raises(Exception, match="injected fault"):
        tracker.start_trial(0, {"batch_size": 8}, {"tuner.role": "baseline"})
    database.execute("DROP TRIGGER refuse")
    database.commit()

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(
        value=10.0, params={}, distributions={},
        user_attrs={"knobs": {"batch_size": 8}, "status": "ok", "role": "baseline",
                    "metrics": {"samples_per_sec": 10.0}}))
    tracker.record_trial(row_of(study.trials[0]))
    runs = tracker.client.search_runs([tracker.experiment_id])
    assert [(run.info.status, run.data.params) for run in runs] == [
        ("FINISHED", {"batch_size": "8"})]

    stray = tracker.client.create_run(tracker.experiment_id, tags={  # an older run, unknown
        "tuner.kind": "trial", "tuner.study": "faults", "tuner.trial": "0"}, start_time=1)
    assert sync_trials(tracker, [row_of(study.trials[0])]) == []
    assert tracker.client.get_run(stray.info.run_id).info.status == "FAILED"


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 2-MiB tmpfs: a filesystem that really fills up (root and mount(2) needed)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full filesystem needs root to mount a small tmpfs")
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(volume)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def fill(volume: Path) -> Path:
    """Fill the volume to its last byte; the filler file, to delete to free it."""
    filler = volume / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            try:
                while os.write(handle, b"\0" * size):
                    pass
            except OSError:
                pass  # full at this size: try a smaller one
    finally:
        os.close(handle)
    return filler


def test_a_full_disk_is_waited_out_when_space_comes_back(small_volume: Path,
                                                         patience: None) -> None:
    said: list[str] = []
    storage, trial_id = _storage(f"sqlite:///{small_volume / 'study.db'}", said)
    filler = fill(small_volume)
    _later(2, filler.unlink)
    storage.set_trial_user_attr(trial_id, "info", "x" * 200_000)  # needs new pages
    assert len(storage.get_trial(trial_id).user_attrs["info"]) == 200_000
    assert "database or disk is full" in said[0] or "disk I/O error" in said[0], said
    assert said[-1].startswith("the study storage answers again")


@pytest.fixture
def server() -> Iterator[Postgres]:
    """A PostgreSQL server of this test's own (it is stopped and started under the test)."""
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql; .ci/run does)")
    started = Postgres()
    started.start()
    try:
        yield started
    finally:
        started.stop()


def test_a_postgres_restart_is_reconnected(server: Postgres, patience: None) -> None:
    """The server stops (its pooled connections die with it) and starts again on its port."""
    said: list[str] = []
    storage, trial_id = _storage(server.url, said)
    storage.set_trial_user_attr(trial_id, "before", 1)  # a pooled connection now exists
    server.pause()
    _later(3, server.resume)
    storage.set_trial_user_attr(trial_id, "after", 1)
    assert storage.get_trial(trial_id).user_attrs == {"before": 1, "after": 1}
    assert said and said[0].startswith("warning: the study storage is failing ("), said
    assert said[-1].startswith("the study storage answers again")
    lines = len(said)
    server.pause()  # the pool's connections are dead again; the server is back at once
    server.resume()
    storage.set_trial_user_attr(trial_id, "pinged", 1)  # pre-ping: no error, no wait
    assert storage.get_trial(trial_id).user_attrs["pinged"] == 1
    assert len(said) == lines, said[lines:]


SEARCH_SPACE = """
study: {study}
workload: faulty_workloads:slow
knobs: {{batch_size: [8, 16]}}
baseline: {{batch_size: 8}}
budget: {{trials: 1}}
measure: {{warmup_steps: 1, timed_steps: 8, min_timed_steps: 3, max_timed_s: 60}}
guard: {{steps: 1, batch_size: 8}}
trial: {{time_limit_s: 120, heartbeat_s: 1}}
sampler: {{priors: false}}
"""


def _search(folder: Path, study: str, storage: str, retry_s: str) -> subprocess.Popen[str]:
    """`tuner search` of a one-trial study in `folder`, its study in `storage`."""
    (folder / "space.yaml").write_text(SEARCH_SPACE.format(study=study), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), sg.RETRY_ENV: retry_s}
    return subprocess.Popen([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                             "space.yaml", "--storage", storage], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until_started(search: subprocess.Popen[str]) -> list[str]:
    """The search's lines up to its first trial's start."""
    assert search.stdout is not None
    lines = []
    for line in search.stdout:
        lines.append(line)
        if " started (" in line:
            return lines
    raise AssertionError("no trial started:\n" + "".join(lines) + search.stderr.read())


@pytest.mark.slow
def test_a_disk_full_under_a_search_stops_it_in_one_line_and_the_next_runs_it(
        small_volume: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{small_volume / 'study.db'}"
    search = _search(tmp_path, "full", storage, retry_s="4")
    _until_started(search)
    filler = fill(small_volume)
    out, err = search.communicate(timeout=180)
    assert search.returncode == 1, err
    assert "warning: the study storage is failing (OperationalError: database or disk is " \
           "full); retrying for up to 4 s" in out
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("tuner: search stopped: the study storage ")
    assert "database or disk is full" in err and "run the same command again" in err
    assert "trial 0 was not recorded: ok, " in err and " samples/s" in err  # what it measured

    filler.unlink()  # space again: the same command runs the trial again and ends the study
    again = _search(tmp_path, "full", storage, retry_s="4")
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert "trials 0 were interrupted (their search stopped): re-queued" in out
    assert "trial 1 started (baseline, retry of trial 0" in out
    states = [trial.state for trial in optuna.load_study(
        study_name="full", storage=storage).get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]


@pytest.mark.slow
def test_a_postgres_restart_under_a_search_loses_nothing(tmp_path: Path,
                                                        server: Postgres) -> None:
    search = _search(tmp_path, "restarted", server.url, retry_s="120")
    _until_started(search)
    server.pause()
    time.sleep(4)  # past the 1-s heartbeat: beats and the stale check meet a dead server
    server.resume()
    out, err = search.communicate(timeout=180)
    assert search.returncode == 0, err
    assert "Traceback" not in err and server.password not in out + err
    assert "warning: heartbeats cannot be written (OperationalError: " in out
    assert "heartbeats are written again" in out
    assert "trial 0 ok: " in out
    trials = optuna.load_study(study_name="restarted", storage=server.url).get_trials()
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE]
