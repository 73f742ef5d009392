"""DataLoader: worker processes (loading in parallel with the step, at the price of cores),
how many batches each keeps ready, and whether they live between passes over the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.knobs.base import Knob, RunSetup, Switch


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


class _WithWorkers(Knob):
    """Means something only when the loader has worker processes."""

    def is_active(self, values: Mapping[str, Any]) -> bool:
        return int(values.get("num_workers", 0)) > 0


class PrefetchFactor(_WithWorkers):
    name = "prefetch_factor"
    help = "batches each DataLoader worker loads ahead (torch's default: 2); with workers only"
    default = 2
    integer = True
    min_value = 1

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.prefetch_factor = int(value)


class PersistentWorkers(_WithWorkers, Switch):
    name = "persistent_workers"
    help = "keep DataLoader workers alive between passes (no restart per epoch); with workers only"

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.persistent_workers = value == "on"
