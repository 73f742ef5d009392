"""`tuner search` killed with SIGKILL at random points, then run again: the study resumes,
no completed trial is lost or duplicated, interrupted trials are failed and re-queued (Optuna
heartbeats + its stale-trial retry callback), and nothing is left RUNNING in MLflow."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from conftest import SPACES, TESTS, live_trial_processes
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tuner.driver import recovery as rc
from tuner.driver import study as st

SPACE = """
study: killed
workload: {name: "faulty_workloads:slow", options: {image_size: 16}}
knobs: {batch_size: [8, 16, 32, 64, 128]}
baseline: {batch_size: 8}
budget: {trials: 5}
measure: {warmup_steps: 1, timed_steps: 6, min_timed_steps: 6}
trial: {time_limit_s: 120, heartbeat_s: 1}
guard: {steps: 1, batch_size: 8}
sampler: {name: random, seed: 3}
"""
KILLS = 3


def _search(folder: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "TUNER_HOST_LOCK": str(folder / "lock")}
    return subprocess.Popen([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                             "space.yaml"],
                            cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _completed(study: optuna.Study) -> dict[int, float]:
    return {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE, encoding="utf-8")
    storage = f"sqlite:///{tmp_path / 'tuner-runs' / 'optuna.db'}"
    rng = random.Random(20261123)
    seen: dict[int, float] = {}
    for round_number in range(KILLS):
        search = _search(tmp_path)
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(search.stdout,), daemon=True)
        reader.start()
        if round_number == 0:  # while it starts: Ray, stores, the settle step
            time.sleep(rng.uniform(0.5, 5.0))
        else:  # anywhere in a trial's life: its process, its measurement, its tell, MLflow
            deadline = time.monotonic() + 120
            while not any(" started (" in line for line in lines) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(rng.uniform(0.0, 10.0))
        search.send_signal(signal.SIGKILL)
        search.wait(timeout=60)
        reader.join(timeout=10)
        deadline = time.monotonic() + 30
        while live_trial_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not live_trial_processes(), "a trial process outlived its killed search"
        if (tmp_path / "tuner-runs" / "optuna.db").exists():
            names = optuna.get_all_study_names(storage)
            if "killed" in names:
                now = _completed(optuna.load_study(study_name="killed", storage=storage))
                assert seen.items() <= now.items()  # nothing completed was lost or changed
                seen = now

    final = _search(tmp_path)
    out, _ = final.communicate(timeout=600)
    assert final.returncode == 0, out

    study = optuna.load_study(study_name="killed", storage=storage)
    trials = study.get_trials()
    assert seen.items() <= _completed(study).items()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    print(f"{KILLS} kills: {len(interrupted)} trials interrupted, {len(seen)} completed before "
          f"the last kill, {len(trials)} trials in all")
    assert interrupted, "no kill landed while a trial ran: the test proves nothing"
    # (a kill between a trial's result and its tell leaves its status "ok": still interrupted)
    assert all(rc.is_interrupted(t) for t in interrupted), [
        (t.number, t.user_attrs.get(st.STATUS), t.user_attrs.get(st.REASON)) for t in interrupted]
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 5  # the budget, interrupted trials not counted
    for trial in interrupted:  # each was re-queued (Optuna's retry callback)
        assert any(trial.number in t.system_attrs.get("retry_history", []) for t in trials), \
            trial.number
    roots = [t.system_attrs.get("failed_trial", t.number) for t in counted]
    assert len(roots) == len(set(roots)), "a config completed twice: once and as its retry"

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'tuner-runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("killed")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"], "MLflow runs left RUNNING"
    trial_runs = [r for r in runs if r.data.tags.get("tuner.kind") == "trial"]
    by_trial = {}
    for run in trial_runs:
        by_trial.setdefault(int(run.data.tags["tuner.trial"]), []).append(run)
    for trial in trials:
        if trial.state == TrialState.WAITING:
            continue
        [run] = by_trial[trial.number]  # exactly one run per trial
        expected = "FINISHED" if trial.state == TrialState.COMPLETE else "FAILED"
        assert run.info.status == expected, (trial.number, run.info.status)


def test_a_trial_killed_between_its_result_and_its_tell_counts_as_interrupted(
        tmp_path: Path) -> None:
    from tuner.driver import ranking

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    trial = study.ask()
    trial.set_user_attr(st.STATUS, "ok")  # the result was recorded ...
    study.tell(trial, state=TrialState.FAIL)  # ... then the stale-trial check failed it
    frozen = study.get_trials()[0]
    assert rc.is_interrupted(frozen)
    assert ranking.row_of(frozen).status == "interrupted"
    failed = study.ask()
    failed.set_user_attr(st.STATUS, "crashed")
    study.tell(failed, state=TrialState.FAIL)
    assert not rc.is_interrupted(study.get_trials()[1])  # a real failure stays one


@pytest.mark.slow
def test_a_baseline_left_running_without_a_heartbeat_does_not_block_the_study(
        tmp_path: Path) -> None:
    """A baseline trial RUNNING with no heartbeat row (its search died between asking for it
    and its first beat): the next search re-queues it after the grace and measures it,
    instead of waiting forever for a search that is gone."""
    from tuner.driver.space import load_space
    from tuner.driver.stores import locations

    space = load_space(SPACES / "quick_train.yaml",
                       ["budget.trials=2", "trial.heartbeat_s=1"])
    where = locations(space, tmp_path / "tuner-runs")
    where.workdir.mkdir(parents=True)
    study, _ = rc.open_study(where, space, space.study)
    st.enqueue_baseline(study, space)
    silent = optuna.load_study(study_name=space.study, storage=where.storage).ask()
    assert silent.user_attrs[st.ROLE] == st.BASELINE  # RUNNING, and no heartbeat row
    done = subprocess.run(
        [sys.executable, "-m", "tuner.driver.cli", "search", "--space",
         str(SPACES / "quick_train.yaml"), "--set", "budget.trials=2", "--set",
         "trial.heartbeat_s=1", "--set", "measure.max_timed_s=0.5", "--workdir",
         str(where.workdir)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trials 0 were interrupted (their search stopped): re-queued" in done.stdout
    trials = optuna.load_study(study_name=space.study, storage=where.storage).get_trials()
    assert trials[0].state == TrialState.FAIL
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].user_attrs[st.ROLE] == st.BASELINE
