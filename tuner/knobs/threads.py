"""Threads: intra-op (torch.set_num_threads plus OMP/MKL variables set before torch starts)
and inter-op (torch.set_num_interop_threads).

"default" leaves torch's own choice (one thread per physical core), which is what an
unoptimised job gets; the variables inherited from the parent (Ray sets OMP_NUM_THREADS in its
workers) are removed by the executor so "default" really is torch's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.errors import show
from tuner.knobs.base import Host, Knob, RunSetup

DEFAULT = "default"


class _ThreadCount(Knob):
    """A thread count: 'default' (torch's choice) or an integer up to the worker's cores."""

    default = DEFAULT
    integer = True
    min_value = 1

    def check_choice(self, value: Any) -> Any:
        return _thread_count(value)

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value != DEFAULT and int(value) > host.cpu_count:
            return f"{self.name}={value}: this worker has only {host.cpu_count} usable cores"
        return None


class IntraOpThreads(_ThreadCount):
    name = "threads"
    help = "intra-op threads (torch.set_num_threads); 'default' = torch's choice"

    def cpus(self, value: Any, node_cpus: int) -> int:
        return node_cpus if value == DEFAULT else int(value)

    def process_env(self, value: Any, values: Mapping[str, Any]) -> dict[str, str]:
        if value == DEFAULT:
            return {}
        count = str(int(value))
        return {"OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count}

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.intra_op_threads = None if value == DEFAULT else int(value)


class InterOpThreads(_ThreadCount):
    name = "interop_threads"
    help = "inter-op threads (torch.set_num_interop_threads); 'default' = torch's choice"

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.interop_threads = None if value == DEFAULT else int(value)


def _thread_count(value: Any) -> Any:
    if value == DEFAULT:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be 'default' or an integer >= 1, got {show(value)}")
    return value
