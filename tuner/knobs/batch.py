"""Batch size: on CPUs smaller batches often win (the published study: 16 beat 128 by 1.4x)."""

from __future__ import annotations

from typing import Any

from tuner.knobs.base import Knob, RunSetup


class BatchSize(Knob):
    name = "batch_size"
    help = ("samples per step; in training a different batch size changes convergence (scale "
            "the learning rate with it): the accuracy guard does not check that")
    default = 32
    integer = True
    min_value = 1
    log_range_in_powers_of_two = True  # 16, 32, 64, ...: what fits kernels and memory

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.batch_size = int(value)
