"""OpenMP runtime and thread placement: torch's own GNU libgomp or Intel's libiomp5
(preloaded, as run_cpu does; it answers torch's GOMP_* calls), and whether the trial's threads
are pinned to cores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner import runtime_libs
from tuner.knobs.base import Host, Knob

GOMP = "gomp"


class OpenMPRuntime(Knob):
    name = "omp_runtime"
    help = "OpenMP runtime: gomp (torch's libgomp) or iomp (Intel libiomp5, LD_PRELOAD)"
    default = GOMP
    allowed = (GOMP, "iomp")

    def process_env(self, value: Any, values: Mapping[str, Any]) -> dict[str, str]:
        path = runtime_libs.find("iomp") if value == "iomp" else None
        if path is None:
            return {}
        # run_cpu's settings for Intel OpenMP: threads sleep at once when idle
        return {"LD_PRELOAD": str(path), "KMP_BLOCKTIME": "1"}

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == "iomp" and runtime_libs.find("iomp") is None:
            return runtime_libs.missing_reason("iomp")
        return None


class Affinity(Knob):
    name = "affinity"
    help = "thread placement: none (the OS decides) or cores (process pinned to its own cores, " \
           "OpenMP threads bound close to them)"
    default = "none"
    allowed = ("none", "cores")

    def pins_cores(self, value: Any) -> bool:
        return value == "cores"

    def process_env(self, value: Any, values: Mapping[str, Any]) -> dict[str, str]:
        if value != "cores":
            return {}
        if values.get(OpenMPRuntime.name, GOMP) == "iomp":
            # Intel OpenMP's own binding, as run_cpu sets it. Not OMP_PROC_BIND: torch's libgomp
            # is loaded too, reads it at load time and binds the main thread to one core before
            # libiomp5 starts, which then sees one core and runs torch on one thread.
            return {"KMP_AFFINITY": "granularity=fine,compact,1,0"}
        return {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
