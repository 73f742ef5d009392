"""GPU trials on a real CUDA GPU, through the node supervisor (skipped where torch sees none).

These need only torch and the trial-process side of the tuner, so they run on a lent GPU
machine that lacks Ray, Optuna and MLflow (benchmarks/gpu_check.sh runs them there). What
tests/test_gpu.py can only stand in for on a CPU is checked here for real: a CUDA trial is
measured with its GPU memory and device facts, fp16 trains with gradient scaling, bf16 +
channels_last + cuDNN benchmark pass the guard, and a compiled CUDA trial reports compile time.
"""

from __future__ import annotations

import pytest
import torch

from tuner.knobs import Host
from tuner.knobs.base import RunSetup
from tuner.node.supervisor import run_trial_process
from tuner.trial import GuardSettings, MeasureSettings, TrialConfig, TrialResult, WorkloadSpec
from tuner.worker.runner import TrainRun
from tuner.workloads.vision import tiny_cnn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

BASE = {"device": "cuda", "batch_size": 64, "num_workers": 0, "pin_memory": "off",
        "non_blocking": "off", "dtype": "fp32", "tf32": "default", "cudnn_benchmark": "off",
        "memory_format": "contiguous", "compile": "none"}


def _trial(number: int, guard: bool = True, time_limit_s: float = 300,
           **changes: object) -> TrialResult:
    config = TrialConfig(
        study="gpu-device", trial_number=number,
        workload=WorkloadSpec("tiny_cnn", {"image_size": 32}), knobs={**BASE, **changes},
        measure=MeasureSettings(warmup_steps=3, timed_steps=30, min_timed_steps=10,
                                max_timed_s=3, max_cv=1.0),
        guard=GuardSettings(run=guard, steps=3, batch_size=8), time_limit_s=time_limit_s, gpus=1)
    return TrialResult.from_dict(run_trial_process(config.to_json(), time_limit_s))


def test_the_host_sees_the_gpu_the_knobs_check() -> None:
    host = Host.detect()
    assert host.has_cuda and host.gpu_name and host.gpu_capability >= (7, 0)


def test_a_cuda_trial_is_measured_with_its_gpu_facts() -> None:
    result = _trial(0)
    assert result.status == "ok", (result.reason, result.info.get("stderr_tail"))
    assert result.info["device"] == "cuda" and "compute capability" in result.info["gpu"]
    assert result.info["versions"]["cuda"] not in ("", "None")
    metrics = result.metrics
    assert metrics["samples_per_sec"] > 0 and metrics["gpu_peak_allocated_mb"] > 0
    assert metrics["gpu_peak_reserved_mb"] >= metrics["gpu_peak_allocated_mb"]
    assert result.guard_loss is not None and result.guard_loss == result.guard_loss  # not NaN


def test_bf16_channels_last_and_cudnn_benchmark_pass_the_guard() -> None:
    fp32 = _trial(1)
    fast = _trial(2, dtype="bf16", memory_format="channels_last", cudnn_benchmark="on")
    assert fp32.status == fast.status == "ok", (fp32.reason, fast.reason)
    assert abs(fast.guard_loss - fp32.guard_loss) / abs(fp32.guard_loss) < 0.05


def test_fp16_trains_with_gradient_scaling_on_the_gpu() -> None:
    setup = RunSetup(device="cuda", batch_size=8, autocast_dtype="float16", grad_scaling=True)
    run = TrainRun(tiny_cnn(image_size=16), setup, num_batches=4, batch_size=8, data_seed=0)
    losses = [float(run.step(batch)) for batch in run.batches()]
    assert run.scaler is not None and run.scaler.get_scale() > 1
    assert all(torch.isfinite(torch.tensor(losses)))
    trial = _trial(3, dtype="fp16", pin_memory="on", non_blocking="on", num_workers=2)
    assert trial.status == "ok", (trial.reason, trial.info.get("stderr_tail"))


def test_a_compiled_cuda_trial_reports_its_compile_time() -> None:
    result = _trial(4, guard=False, compile="inductor")
    assert result.status == "ok", (result.reason, result.info.get("stderr_tail"))
    assert result.metrics["compile_s"] > 0
