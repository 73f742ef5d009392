"""NUMA placement: run the trial under `numactl`, its CPUs and memory bound to one node (the
node of its first core), so its memory stays local on multi-socket machines.

Containers often refuse memory binding (set_mempolicy is not permitted): then the trial is bound
by CPU only and says so; a machine without numactl skips the choice with the install command.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner.knobs.base import Host, Knob

LOCAL = "local"


def node_of(core: int) -> int:
    """The NUMA node holding a CPU (0 where /sys does not say)."""
    for node in Path("/sys/devices/system/node").glob("node[0-9]*"):
        if (node / f"cpu{core}").exists():
            return int(node.name.removeprefix("node"))
    return 0


@functools.cache
def _works(command: tuple[str, ...]) -> bool:
    try:
        return subprocess.run([*command, "true"], capture_output=True, timeout=30,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class NumaPlacement(Knob):
    name = "numa"
    help = "NUMA placement: none, or local (numactl: CPUs and memory on the node of its cores)"
    default = "none"
    allowed = ("none", LOCAL)

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == LOCAL and shutil.which("numactl") is None:
            return "numa=local: numactl not found (apt-get install numactl)"
        return None

    def launch_prefix(self, value: Any, cores: list[int] | None) -> tuple[list[str], str]:
        if value != LOCAL or shutil.which("numactl") is None:
            return [], ""
        node = node_of(cores[0] if cores else min(os.sched_getaffinity(0)))
        both = ("numactl", f"--cpunodebind={node}", f"--membind={node}")
        if _works(both):
            return list(both), f"CPUs and memory bound to NUMA node {node}"
        cpu_only = ("numactl", f"--cpunodebind={node}")
        if _works(cpu_only):
            return list(cpu_only), (f"CPUs bound to NUMA node {node}; memory binding refused "
                                    "here (a container?)")
        return [], "numactl refused every binding here: not bound"
