"""DataLoader worker processes: loading in parallel with the step, at the price of cores."""

from __future__ import annotations

from typing import Any

from tuner.knobs.base import Knob, RunSetup


class NumWorkers(Knob):
    name = "num_workers"
    help = "DataLoader worker processes (0: load in the training process)"
    default = 0
    integer = True
    min_value = 0

    def cpus(self, value: Any, node_cpus: int) -> int:
        return int(value)

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.num_workers = int(value)
