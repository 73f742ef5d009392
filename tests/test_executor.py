"""Trial processes for real: a measured trial, and each way a trial can fail.

These call the Ray task's body directly (it is a plain function) so each case costs one
trial process; test_search.py runs the same path through real Ray.
"""

from __future__ import annotations

import time

import pytest
from trial_processes import run as _run
from trial_processes import trial_config as _config

from tuner.executor import trial_env
from tuner.trial import CRASHED, FAILED, OK, OOM, TIMEOUT, UNSUPPORTED


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


def test_guard_is_deterministic_across_processes() -> None:
    first, second = _run(_config()), _run(_config(threads="default", batch_size=32))
    assert first.guard_loss == second.guard_loss  # same numerics, same fixed experiment


def test_inherited_thread_variables_are_not_passed_on() -> None:
    env, explicit = trial_env({"OMP_NUM_THREADS": "7", "LD_PRELOAD": "x.so", "HOME": "/h"},
                              {"threads": "default"})
    assert "OMP_NUM_THREADS" not in env and "LD_PRELOAD" not in env and env["HOME"] == "/h"
    assert explicit == {}


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
