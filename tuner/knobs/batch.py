"""Batch size: on CPUs smaller batches often win (the published study: 16 beat 128 by 1.4x)."""

from __future__ import annotations

from typing import Any

from tuner.knobs.base import Knob, RunSetup


class BatchSize(Knob):
    name = "batch_size"
    help = "samples per training step"
    default = 32
    integer = True
    min_value = 1

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.batch_size = int(value)
