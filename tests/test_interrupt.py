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


def test_sigterm_closes_running_trial_and_kills_its_process(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    search = subprocess.Popen([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                               "space.yaml"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _trial_processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert _trial_processes(), "the trial process never started"
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
