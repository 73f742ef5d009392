"""Memory format: channels_last lets oneDNN pick faster convolution kernels on CPUs."""

from __future__ import annotations

from typing import Any

from tuner.knobs.base import Knob, RunSetup


class MemoryFormat(Knob):
    name = "memory_format"
    help = "tensor layout of the model and its inputs"
    default = "contiguous"
    allowed = ("contiguous", "channels_last")
    changes_numerics = True  # other kernels, other summation order

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.channels_last = value == "channels_last"
