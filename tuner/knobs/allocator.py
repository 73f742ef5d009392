"""Memory allocator: glibc's default, jemalloc or tcmalloc, preloaded before torch starts.

PyTorch's run_cpu launcher preloads one of them (with jemalloc's settings below); training
allocates and frees large tensors every step, where the allocator's reuse shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner import runtime_libs
from tuner.knobs.base import Host, Knob

DEFAULT = "default"


class Allocator(Knob):
    name = "allocator"
    help = "memory allocator: default (glibc), jemalloc, tcmalloc (LD_PRELOAD)"
    default = DEFAULT
    allowed = (DEFAULT, "jemalloc", "tcmalloc")

    def process_env(self, value: Any, values: Mapping[str, Any]) -> dict[str, str]:
        if value == DEFAULT:
            return {}
        path = runtime_libs.find(value)
        if path is None:
            return {}  # the trial process reports it unsupported before building anything
        env = {"LD_PRELOAD": str(path)}
        if value == "jemalloc":
            env["MALLOC_CONF"] = runtime_libs.JEMALLOC_CONF
        return env

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value != DEFAULT and runtime_libs.find(value) is None:
            return runtime_libs.missing_reason(value)
        return None
