"""A real `mlflow server` on loopback, stopped and started during searches: the study goes on,
what MLflow missed is logged when it is back, or the search ends with exit code 3 naming what
is missing; the Optuna storage stays the record of truth."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import TESTS
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from services import MlflowServer

from tuner.driver.hostlock import creating_sqlite

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")

SPACE = """
study: outage
workload: {name: "faulty_workloads:slow", options: {image_size: 16}}
knobs: {batch_size: {low: 8, high: 128}}  # wide: no config is drawn twice
baseline: {batch_size: 8}
budget: {trials: 4}
measure: {warmup_steps: 1, timed_steps: 3, min_timed_steps: 3}
trial: {time_limit_s: 120, heartbeat_s: 2}
guard: {steps: 1, batch_size: 8}
sampler: {name: random, seed: 5}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    running = MlflowServer(tmp_path)
    running.start()
    yield running
    running.stop()


def _search(folder: Path, url: str, *extra: str, wait_s: int = 3) -> subprocess.Popen[str]:
    """`tuner search`; at its end it waits `wait_s` for an unreachable MLflow to come back."""
    env = {**os.environ, "PYTHONPATH": str(TESTS), "TUNER_MLFLOW_WAIT_S": str(wait_s),
           "TUNER_MLFLOW_RETRY_S": "5"}  # retry a server that is back within seconds
    return subprocess.Popen([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                             "space.yaml",
                             "--tracking-uri", url, *extra], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_completed(storage: str, count: int, search: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and search.poll() is None:
        if Path(storage.removeprefix("sqlite:///")).exists():
            try:
                with creating_sqlite(storage):  # not while the search creates its tables
                    study = optuna.load_study(study_name="outage", storage=storage)
                if len(study.get_trials(states=(TrialState.COMPLETE,))) >= count:
                    return
            except KeyError:
                pass  # the study is not created yet
        time.sleep(0.5)
    raise AssertionError(f"never reached {count} completed trials")


def test_search_survives_mlflow_outages(server: MlflowServer, tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE, encoding="utf-8")
    storage = f"sqlite:///{tmp_path / 'tuner-runs' / 'optuna.db'}"

    # 1. the server goes away mid-search and comes back before the end: all is logged
    search = _search(tmp_path, server.url, wait_s=180)
    _wait_completed(storage, 1, search)
    server.stop()
    _wait_completed(storage, 3, search)
    server.start()
    out, err = search.communicate(timeout=600)
    assert search.returncode == 0, out + err
    assert "warning: MLflow unreachable" in out and "MLflow answers again" in out
    assert "MLflow brought up to date" in out

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name("outage")

    def runs() -> tuple[list, list]:
        found = client.search_runs([experiment.experiment_id], max_results=1000)
        return ([r for r in found if r.data.tags["tuner.kind"] == "search"],
                [r for r in found if r.data.tags["tuner.kind"] == "trial"])

    parents, children = runs()
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["tuner.trial"]) for r in children) == [0, 1, 2, 3]
    for run in children:
        assert run.info.status == "FINISHED" and run.data.metrics["samples_per_sec"] > 0

    # 2. the server goes away and stays away: exit code 3, naming what MLflow lacks
    search = _search(tmp_path, server.url, "--trials", "6")
    _wait_completed(storage, 5, search)
    server.stop()
    out, err = search.communicate(timeout=600)
    assert search.returncode == 3, out + err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "is unreachable: trial(s) " in err and "this search's summary run" in err
    assert "the Optuna storage" in err and "holds every trial" in err
    study = optuna.load_study(study_name="outage", storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 6  # the search went on

    # 3. the server is back: the same command logs what was missing, and closes the run
    server.start()
    search = _search(tmp_path, server.url, "--trials", "6")
    out, err = search.communicate(timeout=600)
    assert search.returncode == 0, out + err
    assert "nothing to run" in out and "MLflow brought up to date" in out
    parents, children = runs()
    assert sorted(int(r.data.tags["tuner.trial"]) for r in children) == [0, 1, 2, 3, 4, 5]
    assert all(r.info.status == "FINISHED" for r in children)
    assert not [r for r in parents if r.info.status == "RUNNING"]
