"""GPU math settings: TF32 tensor cores for fp32 matmuls and convolutions, and cuDNN's
per-shape algorithm search. Both only mean something on a CUDA trial."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup, Switch
from tuner.knobs.device import on_cuda


class _CudaOnly(Knob):
    """A knob that acts only on CUDA trials (inactive, so never sampled, on CPU ones)."""

    def is_active(self, values: Mapping[str, Any]) -> bool:
        return on_cuda(values)


class Tf32(_CudaOnly):
    name = "tf32"
    help = ("cuda only: fp32 matmuls and convolutions on TF32 tensor cores (on), strict fp32 "
            "(off), or torch's default (default: convolutions TF32, matmuls fp32)")
    default = "default"
    allowed = ("default", "off", "on")
    changes_numerics = True  # a 10-bit mantissa for the products

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == "on" and host.has_cuda and host.gpu_capability < (8, 0):
            return (f"tf32=on needs an Ampere or newer GPU (compute capability 8.0); "
                    f"{host.gpu_name} is {host.gpu_capability[0]}.{host.gpu_capability[1]}")
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.tf32 = {"default": None, "off": False, "on": True}[value]


class CudnnBenchmark(_CudaOnly, Switch):
    name = "cudnn_benchmark"
    help = "cuda only: torch.backends.cudnn.benchmark (time cuDNN's algorithms per input shape)"
    changes_numerics = True  # another algorithm may sum in another order

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.cudnn_benchmark = value == "on"
