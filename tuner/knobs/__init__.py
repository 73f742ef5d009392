"""The knob registry: adding a knob is one module plus one line here.

Order matters: a conditional knob comes after the knobs its condition reads, and knobs are
applied in this order.
"""

from __future__ import annotations

from tuner.knobs.allocator import Allocator
from tuner.knobs.backend import Backend
from tuner.knobs.base import Host, Knob, RunSetup
from tuner.knobs.batch import BatchSize
from tuner.knobs.compile import CompileBackend, CompileMode
from tuner.knobs.cuda_math import CudnnBenchmark, Tf32
from tuner.knobs.device import Device
from tuner.knobs.ipex import Ipex
from tuner.knobs.loader import NumWorkers, PersistentWorkers, PrefetchFactor
from tuner.knobs.memory_format import MemoryFormat
from tuner.knobs.numa import NumaPlacement
from tuner.knobs.openmp import Affinity, OpenMPRuntime
from tuner.knobs.precision import AutocastDtype
from tuner.knobs.quantize import Quantize
from tuner.knobs.threads import InterOpThreads, IntraOpThreads
from tuner.knobs.transfer import NonBlocking, PinMemory

REGISTRY: dict[str, Knob] = {
    knob.name: knob
    for knob in (
        Device(),  # first: other knobs' conditions and checks read it
        BatchSize(),
        NumWorkers(),
        PrefetchFactor(),
        PersistentWorkers(),
        PinMemory(),
        NonBlocking(),
        AutocastDtype(),
        Tf32(),
        CudnnBenchmark(),
        MemoryFormat(),
        CompileBackend(),
        CompileMode(),
        IntraOpThreads(),
        InterOpThreads(),
        Allocator(),
        OpenMPRuntime(),
        Affinity(),
        NumaPlacement(),
        Ipex(),
        Quantize(),
        Backend(),
    )
}

__all__ = ["REGISTRY", "Host", "Knob", "RunSetup", "active_values", "numerics_key"]


def active_values(values: dict[str, object]) -> dict[str, object]:
    """Drop the knobs whose condition is false (e.g. compile_mode when compile is none)."""
    return {
        name: value
        for name, value in values.items()
        if name not in REGISTRY or REGISTRY[name].is_active(values)
    }


def numerics_key(values: dict[str, object]) -> str:
    """The part of a config that can change results: guard results are cached by it."""
    parts = [
        f"{name}={values[name]}"
        for name, knob in REGISTRY.items()
        if knob.changes_numerics and name in values and knob.is_active(values)
    ]
    return ",".join(parts)
