"""Trial processes for real: a measured trial, and each way a trial can fail.

These call the Ray task's body directly (it is a plain function) so each case costs one
trial process; test_search.py runs the same path through real Ray.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from trial_processes import run as _run
from trial_processes import trial_config as _config

from tuner.node.memory import group_memory_mb, group_resident_mb
from tuner.node.supervisor import run_trial_process, trial_env
from tuner.trial import CRASHED, FAILED, OK, OOM, TIMEOUT, UNSUPPORTED, MeasureSettings, TrialResult


def test_measured_trial_reports_everything() -> None:
    result = _run(_config(memory_format="channels_last"))
    assert result.status == OK, result.reason
    for name in ("samples_per_sec", "step_time_median_s", "step_time_iqr_s", "step_time_cv",
                 "peak_rss_mb", "warmup_s", "compile_s"):
        assert name in result.metrics
    assert len(result.step_times_s) == 4
    assert result.metrics["samples_per_sec"] > 0
    assert len(result.guard_losses) == 4
    assert result.guard_loss == pytest.approx(sum(result.guard_losses) / 4)
    # the knob's thread count reached the child, set explicitly, not inherited
    assert result.info["torch_threads"] == 1
    assert result.info["env_set"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_guard_is_deterministic_across_processes() -> None:
    first, second = _run(_config()), _run(_config(threads="default", batch_size=32))
    assert first.guard_loss == second.guard_loss  # same numerics, same fixed experiment


def test_inherited_thread_variables_are_not_passed_on() -> None:
    env, explicit = trial_env({"OMP_NUM_THREADS": "7", "LD_PRELOAD": "x.so", "HOME": "/h"},
                              {"threads": "default"})
    assert "OMP_NUM_THREADS" not in env and "LD_PRELOAD" not in env and env["HOME"] == "/h"
    assert explicit == {}


SECRETS = {"PGPASSWORD": "hunter2", "RAY_AUTH_TOKEN": "t0ken", "AWS_SECRET_ACCESS_KEY": "k",
           "MLFLOW_TRACKING_PASSWORD": "p", "MLFLOW_TRACKING_URI": "http://u:p@h",
           "TUNER_TEST_POSTGRES": "postgresql://tuner:pw@127.0.0.1/x", "GITHUB_TOKEN": "g"}


def test_the_trial_environment_is_an_allow_list() -> None:
    base = {**SECRETS, "PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "CUDA_HOME": "/cuda",
            "PYTHONPATH": "/p", "DATA_DIR": "/data", "PYTORCH_CUDA_ALLOC_CONF": "x"}
    env, _ = trial_env(base, {"threads": "default"})
    assert {"PATH", "HOME", "LC_ALL", "CUDA_HOME", "PYTHONPATH", "PYTORCH_CUDA_ALLOC_CONF"} \
        <= set(env)
    assert not set(SECRETS) & set(env) and "DATA_DIR" not in env
    assert trial_env(base, {"threads": "default"}, ("DATA_DIR",))[0]["DATA_DIR"] == "/data"


def test_no_credential_reaches_workload_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's and the node's credentials are in the supervisor's environment; the
    workload, in its trial process, finds none of them, and finds what the space passes on."""
    for name, value in {**SECRETS, "DATA_DIR": "/data"}.items():
        monkeypatch.setenv(name, value)
    result = _run(_config("faulty_workloads:environment_probe", guard=False,
                          options={"expect": ["DATA_DIR"]}, pass_env=("DATA_DIR",)))
    assert result.status == "ok", result.reason
    missing = _run(_config("faulty_workloads:environment_probe", guard=False,
                           options={"expect": ["DATA_DIR"]}))
    assert missing.status == "failed" and "missing: ['DATA_DIR']" in missing.reason
    assert "leaked: []" in missing.reason  # and still no credential


def test_unsupported_choice_is_skipped_cheaply() -> None:
    started = time.monotonic()
    result = _run(_config(compile="inductor", compile_mode="reduce-overhead"))
    assert result.status == UNSUPPORTED
    assert "CUDA graphs" in result.reason
    assert "samples_per_sec" not in result.metrics
    assert time.monotonic() - started < 30


def test_exception_is_a_failed_trial_with_its_reason() -> None:
    result = _run(_config("faulty_workloads:raises"))
    assert result.status == FAILED
    assert "deliberate test failure" in result.reason
    assert "Traceback" in result.info["traceback"]


def test_out_of_memory_is_its_own_outcome() -> None:
    result = _run(_config("faulty_workloads:too_big"))
    assert result.status == OOM, result.reason
    assert "allocate" in result.reason


@pytest.mark.slow
def test_hang_is_killed_at_the_time_limit() -> None:
    started = time.monotonic()
    result = _run(_config("faulty_workloads:hangs", time_limit_s=8))
    assert result.status == TIMEOUT
    assert "time limit of 8 s" in result.reason
    assert time.monotonic() - started < 20


def test_hard_crash_is_reported_with_its_signal() -> None:
    result = _run(_config("faulty_workloads:aborts"))
    assert result.status == CRASHED
    assert "SIGABRT" in result.reason


@pytest.mark.slow
def test_noisy_slow_steps_that_cannot_be_timed_again_in_time_complete_noisy() -> None:
    """Every round is noisy (steps of 0.3 s and 0.9 s in turn); five more rounds of 5 steps
    would need ~15 s more than the 16-s limit leaves: the trial does not start a round it
    cannot finish, keeps the noisy one, runs its guard and completes (before: killed)."""
    measure = MeasureSettings(warmup_steps=1, timed_steps=4, min_timed_steps=4, max_timed_s=60,
                              max_cv=0.10, remeasure=5)
    result = _run(_config("faulty_workloads:jittery", time_limit_s=16, measure=measure))
    assert result.status == OK, (result.reason, result.info.get("stderr_tail"))
    assert result.metrics["noisy"] == 1 and result.metrics["measure_rounds"] < 6
    assert "before the trial's time limit" in result.info["note"]
    assert result.guard_loss is not None  # the guard's time was kept for it
    assert result.info["wall_s"] < 16


@pytest.mark.slow
def test_a_trial_killed_at_its_limit_keeps_the_steps_it_timed() -> None:
    """Three 0.3-s steps are timed, then the fourth hangs: killed at the limit, the trial is a
    timeout that reports those steps, a partial figure from them, and where it was. The limit
    leaves room for a slow start on a loaded machine (at 12 s, a 12-s start once made the
    deadline stop the timing before the hang, a correct `ok` but not this test's case)."""
    measure = MeasureSettings(warmup_steps=1, timed_steps=10, min_timed_steps=2, max_timed_s=60)
    result = _run(_config("faulty_workloads:stalls", time_limit_s=20, guard=False,
                          measure=measure))
    assert result.status == TIMEOUT, (result.reason, result.info.get("progress"))
    assert len(result.step_times_s) == 3 and all(s >= 0.3 for s in result.step_times_s)
    assert result.metrics["samples_per_sec"] == pytest.approx(
        16 / sorted(result.step_times_s)[1])
    assert "time limit of 20 s, in timed step 4 of 10" in result.reason
    assert "3 timed step(s) kept" in result.reason
    progress = result.info["progress"]
    assert progress["phase"] == "timing" and progress["timed_steps"] == 3
    assert progress["startup_s"] > 0 and progress["elapsed_s"] >= 20


def test_a_trial_that_dies_after_timing_steps_keeps_them() -> None:
    measure = MeasureSettings(warmup_steps=1, timed_steps=10, min_timed_steps=2, max_timed_s=60)
    result = _run(_config("faulty_workloads:stalls", guard=False, measure=measure,
                          options={"aborts": True}))
    assert result.status == CRASHED and len(result.step_times_s) == 3
    assert result.reason.startswith("trial process killed by SIGABRT, in timed step 4 of 10")
    assert result.metrics["partial"] == 1 and result.metrics["samples_per_sec"] > 0


def test_forked_loader_workers_sharing_memory_are_counted_once() -> None:
    """A trial holding 800 MB that its 2 forked DataLoader workers share: its real footprint
    (~1.5 GB with torch) fits a 2,200 MB cap, its summed resident size (what the cap used to
    count, ~3.6 GB) does not."""
    result = _run(_config("faulty_workloads:shares_memory", num_workers=2, guard=False,
                          memory_limit_mb=2200, options={"shared_mb": 800}))
    assert result.status == OK, (result.reason, result.info.get("stderr_tail"))
    assert 800 < result.info["memory_peak_mb"] < 2200


def test_memory_shared_by_forked_processes_is_counted_once() -> None:
    """The counting itself, on a plain process group: 300 MB touched, then 2 forks that sleep."""
    code = ("import os, time\nheld = bytearray(300 * 2**20)\nfor i in range(0, len(held), 4096):"
            "\n    held[i] = 1\nfor _ in range(2):\n    if os.fork() == 0:\n        time.sleep(30)"
            "\n        os._exit(0)\nprint('ready', flush=True)\ntime.sleep(30)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        real, summed = group_memory_mb(process.pid), group_resident_mb(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert summed > 900 and real < 420, (real, summed)


def test_a_trial_under_ray_measures_at_normal_priority(ray_local) -> None:
    """Ray runs its workers niced; the trial process it starts is reset to niceness 0."""
    worker_niceness = ray_local.get(ray_local.remote(
        lambda: os.getpriority(os.PRIO_PROCESS, 0)).remote())
    result = TrialResult.from_dict(ray_local.get(
        ray_local.remote(run_trial_process).options(num_cpus=1).remote(
            _config(guard=False).to_json(), 120)))
    assert result.status == OK, result.reason
    assert result.info["niceness"] == 0, f"Ray's worker ran at {worker_niceness}"


def test_a_factory_that_returns_no_workload_fails_saying_so() -> None:
    """`workload.name` imports and calls anything: a callable that is not a workload factory
    (here os:getcwd, which returns a str) ends the trial with what it lacks, not a crash later."""
    result = _run(_config("os:getcwd", guard=False))
    assert result.status == "failed"
    assert "returned str, not a train workload: it lacks build_model, dataset" in result.reason
