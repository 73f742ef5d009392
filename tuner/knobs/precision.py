"""Autocast dtype: bf16/fp16 mixed precision. Changes numerics, so the guard checks it.

On a GPU, fp16 training runs with gradient scaling (torch.amp.GradScaler), as anyone would run
it. On the CPU it is offered without on purpose: where gradients are small it underflows, and
the accuracy guard is what rejects it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup
from tuner.knobs.device import on_cuda

_AUTOCAST = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


class AutocastDtype(Knob):
    name = "dtype"
    help = "autocast dtype (fp32: no autocast)"
    default = "fp32"
    allowed = tuple(_AUTOCAST)
    changes_numerics = True

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == "bf16" and on_cuda(values) and host.has_cuda and not host.gpu_bf16:
            return (f"dtype=bf16 on cuda needs an Ampere or newer GPU (compute capability 8.0); "
                    f"{host.gpu_name} is {host.gpu_capability[0]}.{host.gpu_capability[1]}")
        return None  # CPU autocast runs both; without AVX512-BF16/AMX bf16 is emulated and slow

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.autocast_dtype = _AUTOCAST[value]
        # the device knob comes first in the registry, so setup.device is already set
        setup.grad_scaling = value == "fp16" and setup.device == "cuda"
