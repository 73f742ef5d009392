"""Two `tuner search` processes on one study and storage at once.

On one Ray cluster both make progress: Optuna's storage hands out trial numbers atomically and
Ray schedules their trials on separate cores. Two searches that would each start a local Ray on
one machine are refused instead: each would think it owns every core and their trials would
corrupt each other's timings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import TESTS
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")

SPACE = """
study: shared
workload: {name: tiny_cnn, options: {image_size: 16}}
knobs: {batch_size: [8, 16, 32, 64, 128, 256], threads: [1]}
baseline: {batch_size: 8, threads: 1}
budget: {trials: 6}
measure: {warmup_steps: 1, timed_steps: 3, min_timed_steps: 3}
trial: {time_limit_s: 120, heartbeat_s: 2}
guard: {steps: 1, batch_size: 8}
sampler: {name: random, seed: 1}
"""


def _search(folder: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.Popen([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                             "space.yaml",
                             *extra], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_searches_on_one_ray_cluster_both_progress(ray_local, tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE, encoding="utf-8")
    address = ray_local.get_runtime_context().gcs_address
    first = _search(tmp_path, "--ray-address", address)
    second = _search(tmp_path, "--ray-address", address)
    outputs = [first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]]
    assert first.returncode == 0, outputs[0]
    assert second.returncode == 0, outputs[1]
    for out in outputs:
        assert "started (sweep" in out or "started (candidate" in out, out  # both progressed

    storage = f"sqlite:///{tmp_path / 'tuner-runs' / 'optuna.db'}"
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # no duplicate or missing numbers
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    # each search checks the budget before it asks: at most one trial past it per extra search
    assert 6 <= len(trials) <= 7
    assert sum(t.user_attrs.get("role") == "baseline" for t in trials) == 1
    for trial in trials:
        assert trial.user_attrs["metrics"]["samples_per_sec"] > 0

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'tuner-runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    parents = [r for r in runs if r.data.tags["tuner.kind"] == "search"]
    children = [r for r in runs if r.data.tags["tuner.kind"] == "trial"]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in parents)
    assert sorted(int(r.data.tags["tuner.trial"]) for r in children) == numbers
    assert {r.data.tags["mlflow.parentRunId"] for r in children} <= {
        r.info.run_id for r in parents}


def test_second_local_search_on_one_machine_is_refused(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(
        SPACE.replace("tiny_cnn", '"faulty_workloads:hangs"'), encoding="utf-8")
    first = _search(tmp_path)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = first.stdout.readline()
            lines.append(line)
            if " started (" in line or not line:
                break
        assert any(" started (" in line for line in lines), "".join(lines)
        second = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                                 "space.yaml", "--study", "other"], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(TESTS)},
                                capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"another tuner search (pid {first.pid}, study shared" in second.stderr
        assert "--ray-address" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
