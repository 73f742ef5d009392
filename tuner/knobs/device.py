"""Device: run the trial on the CPU or on one CUDA GPU.

A CUDA trial asks Ray for one GPU, so it runs on a node that has a free one and sees only that
GPU (Ray sets CUDA_VISIBLE_DEVICES); a CPU trial asks for none and sees none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup

CPU = "cpu"
CUDA = "cuda"


def device_of(values: Mapping[str, Any]) -> str:
    """The device a config runs on (cpu unless it says cuda)."""
    return str(values.get("device", CPU))


def on_cuda(values: Mapping[str, Any]) -> bool:
    return device_of(values) == CUDA


class Device(Knob):
    name = "device"
    help = "where the job runs: cpu, or cuda (one GPU per trial)"
    default = CPU
    allowed = (CPU, CUDA)
    changes_numerics = True  # other kernels: the guard compares a GPU run with the baseline

    def gpus(self, value: Any) -> int:
        return 1 if value == CUDA else 0

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == CUDA and not host.has_cuda:
            return f"device=cuda: {host.no_gpu_reason()}"
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.device = value
