"""Host-to-GPU copies: pinned (page-locked) batches from the DataLoader, and non-blocking
copies that overlap the step. Only mean something on a CUDA trial."""

from __future__ import annotations

from typing import Any

from tuner.knobs.base import RunSetup, Switch
from tuner.knobs.cuda_math import _CudaOnly


class PinMemory(_CudaOnly, Switch):
    name = "pin_memory"
    help = "cuda only: DataLoader(pin_memory=True), page-locked batches"

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.pin_memory = value == "on"


class NonBlocking(_CudaOnly, Switch):
    name = "non_blocking"
    help = "cuda only: tensor.to(device, non_blocking=True) (asynchronous from pinned memory)"

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.non_blocking = value == "on"
