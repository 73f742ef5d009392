"""Autocast dtype: bf16/fp16 mixed precision. Changes numerics, so the guard checks it.

fp16 is offered without gradient scaling on purpose for CPU training: where gradients are
small it underflows, and the accuracy guard is what rejects it.
"""

from __future__ import annotations

from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup

_AUTOCAST = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


class AutocastDtype(Knob):
    name = "dtype"
    help = "autocast dtype (fp32: no autocast)"
    default = "fp32"
    allowed = tuple(_AUTOCAST)
    changes_numerics = True

    def unsupported_reason(self, value: Any, host: Host) -> str | None:
        return None  # CPU autocast runs both; without AVX512-BF16/AMX bf16 is emulated and slow

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.autocast_dtype = _AUTOCAST[value]
