"""A scheduler stopping the search (SIGTERM) closes its running trial everywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import live_trial_processes
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")

SPACE = """
study: stopped
workload: faulty_workloads:hangs
knobs: {batch_size: [8, 16]}
baseline: {batch_size: 8}
trial: {time_limit_s: 600}
"""


def _trial_processes() -> list[str]:
    return live_trial_processes("tuner-trial-0-")


def _search_with_a_running_trial(folder: Path, space: str) -> subprocess.Popen[str]:
    """`tuner search` of `space` in `folder`, once its first trial process runs."""
    (folder / "space.yaml").write_text(space, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    search = subprocess.Popen([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                               "space.yaml"], cwd=folder, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _trial_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _trial_processes(), "the trial process never started"
    return search


def test_sigterm_closes_running_trial_and_kills_its_process(tmp_path: Path) -> None:
    search = _search_with_a_running_trial(tmp_path, SPACE)
    search.send_signal(signal.SIGTERM)
    _, err = search.communicate(timeout=120)
    assert search.returncode == 130, err
    assert "run the same command again to resume" in err

    storage = f"sqlite:///{tmp_path / 'tuner-runs' / 'optuna.db'}"
    trial = optuna.load_study(study_name="stopped", storage=storage).get_trials()[0]
    assert trial.state == TrialState.FAIL
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'tuner-runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("stopped")
    statuses = {run.data.tags["tuner.kind"]: run.info.status
                for run in client.search_runs([experiment.experiment_id])}
    assert statuses == {"search": "FAILED", "trial": "FAILED"}  # nothing left RUNNING
    deadline = time.monotonic() + 30
    while _trial_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _trial_processes(), "the trial process outlived its search"


PAUSED_SPACE = """
study: paused
workload: faulty_workloads:slow
knobs: {batch_size: [8, 16]}
baseline: {batch_size: 8}
budget: {trials: 2}
measure: {warmup_steps: 1, timed_steps: 8, min_timed_steps: 3, max_timed_s: 60}
guard: {steps: 1, batch_size: 8}
trial: {time_limit_s: 120, heartbeat_s: 1}
sampler: {priors: false}
"""


def test_a_driver_paused_past_the_grace_goes_on_and_the_trial_runs_again(tmp_path: Path) -> None:
    """The driver stopped (Ctrl-Z, a suspended laptop) longer than its heartbeat grace while a
    trial runs, and meanwhile another search of the study fails that trial as stale: when the
    driver resumes and the result arrives, the search goes on (one warning), the config is
    measured again by the re-queued trial, and nothing is left RUNNING."""
    from tuner.driver import recovery as rc

    search = _search_with_a_running_trial(tmp_path, PAUSED_SPACE)
    search.send_signal(signal.SIGSTOP)
    time.sleep(4)  # past the grace of 3 heartbeats of 1 s
    storage = f"sqlite:///{tmp_path / 'tuner-runs' / 'optuna.db'}"
    rc.fail_stale(optuna.load_study(study_name="paused",
                                    storage=rc.open_storage(storage, heartbeat_s=1, grace_s=3)))
    search.send_signal(signal.SIGCONT)
    out, err = search.communicate(timeout=300)
    assert search.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "trial 0 was failed as stale meanwhile" in out, out
    trials = optuna.load_study(study_name="paused", storage=storage).get_trials()
    assert trials[0].state == TrialState.FAIL
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params  # the baseline, measured again
