"""The process-level half of a found config, for the user's own job: the variables (allocator
and OpenMP preloads, OMP/KMP settings, thread counts), the cores it is pinned to, and the
command it starts under (numactl), exactly as the supervisor starts a trial process.

`tuner launch BEST.yaml -- COMMAND` runs COMMAND that way; `tuner export BEST.yaml --to
env|shell|run_cpu` prints it for a launcher of the user's own. What a config sets inside the
process (batch size, loader options, autocast, layout, compile) is listed, not applied here.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.config_file import CONFIG_ENV, read_config
from tuner.knobs import REGISTRY
from tuner.node.supervisor import INHERITED_VARS_REMOVED, knob_env

__all__ = ["CONFIG_ENV", "ProcessHalf", "describe", "export_lines", "launch_env",
           "process_half", "read_config", "run_cpu_command"]


@dataclass
class ProcessHalf:
    """What a process must start with to run as the measured trial did."""

    knobs: dict[str, Any]
    env: dict[str, str]  # set
    unset: list[str]  # inherited variables the measured trial did not have
    cores: list[int] | None  # pinned to these, or None
    prefix: list[str] = field(default_factory=list)  # e.g. numactl --cpunodebind
    notes: list[str] = field(default_factory=list)

    def in_process(self) -> dict[str, Any]:
        """Every knob of the config that acts inside the job (its own code applies them), at
        its default value too: a batch size of 32 is part of what was measured."""
        return {name: value for name, value in self.knobs.items() if name not in PROCESS_LEVEL}


# knobs that act only on how the process starts (the rest act inside it)
PROCESS_LEVEL = ("allocator", "omp_runtime", "affinity", "numa")


def process_half(knobs: dict[str, Any], inherited: dict[str, str]) -> ProcessHalf:
    """The variables, cores and prefix of `knobs` on this machine, against the `inherited`
    environment (the supervisor's own composition, so a launched job starts as the trial did)."""
    explicit = knob_env(knobs)
    unset = sorted(key for key in INHERITED_VARS_REMOVED if key in inherited
                   and key not in explicit)
    usable = sorted(os.sched_getaffinity(0))
    pinned = any(REGISTRY[name].pins_cores(value) for name, value in knobs.items())
    cores = None
    if pinned:
        wanted = sum(REGISTRY[name].cpus(value, len(usable)) for name, value in knobs.items())
        cores = usable[:max(1, min(wanted or len(usable), len(usable)))]
    half = ProcessHalf(knobs, explicit, unset, cores)
    for name, value in knobs.items():
        command, note = REGISTRY[name].launch_prefix(value, cores)
        half.prefix += command
        if note:
            half.notes.append(note)
    for name, value in knobs.items():
        reason = _missing(name, value, explicit)
        if reason:
            half.notes.append(reason)
    return half


def _missing(name: str, value: Any, explicit: dict[str, str]) -> str:
    """A process-level choice this machine cannot honour (a library not installed)."""
    if name == "allocator" and value != "default" and "LD_PRELOAD" not in explicit:
        return f"allocator={value}: its library is not installed here; not preloaded"
    if name == "omp_runtime" and value == "iomp" and "KMP_BLOCKTIME" not in explicit:
        return "omp_runtime=iomp: libiomp5 is not installed here; not preloaded"
    return ""


def launch_env(half: ProcessHalf, inherited: dict[str, str], config: Path) -> dict[str, str]:
    """The job's environment: the user's own, less what the measured trial lacked, plus the
    config's variables and where the config is."""
    env = {key: value for key, value in inherited.items() if key not in half.unset}
    env.update(half.env)
    env[CONFIG_ENV] = str(config.resolve())
    return env


def export_lines(half: ProcessHalf, to: str) -> list[str]:
    """`env`: KEY=VALUE lines (for env files, systemd, Kubernetes); `shell`: lines to source."""
    if to == "env":
        return [f"{key}={value}" for key, value in sorted(half.env.items())]
    lines = [f"unset {key}" for key in half.unset]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(half.env.items())]
    if half.cores is not None:
        lines.append(f"# pin the job to cores {_ranges(half.cores)}: taskset -c "
                     f"{_ranges(half.cores)} YOUR_COMMAND")
    if half.prefix:
        lines.append(f"# start the job under: {shlex.join(half.prefix)} YOUR_COMMAND")
    return lines


def run_cpu_command(half: ProcessHalf) -> tuple[list[str], list[str]]:
    """The `python -m torch.backends.xeon.run_cpu` options that start a job as the config
    says, and what they cannot say (run_cpu's own defaults differ: it preloads Intel OpenMP
    and tcmalloc and binds with numactl unless told not to)."""
    knobs = half.knobs
    options = ["--ninstances", "1"]
    allocator = knobs.get("allocator", "default")
    options.append({"tcmalloc": "--enable-tcmalloc", "jemalloc": "--enable-jemalloc"}.get(
        allocator, "--use-default-allocator"))
    if knobs.get("omp_runtime", "gomp") != "iomp":
        options.append("--disable-iomp")
    threads = knobs.get("threads", "default")
    if threads != "default":
        options += ["--ncores-per-instance", str(threads)]
    if knobs.get("numa", "none") == "none":
        options.append("--disable-numactl")
    if knobs.get("affinity", "none") == "none":
        options.append("--disable-taskset")
    caveats = []
    if knobs.get("affinity") == "cores" and knobs.get("omp_runtime", "gomp") != "iomp":
        caveats.append("affinity=cores with GNU OpenMP: run_cpu binds with KMP_AFFINITY only "
                       "for Intel OpenMP; set OMP_PROC_BIND=close OMP_PLACES=cores yourself")
    return ["python", "-m", "torch.backends.xeon.run_cpu", *options], caveats


def describe(half: ProcessHalf) -> str:
    """One line: what the launched job starts with, and what its own code must apply."""
    parts = [" ".join(f"{key}={value}" for key, value in sorted(half.env.items()))
             or "no variables to set"]
    if half.unset:
        parts.append("unset " + " ".join(half.unset))
    if half.cores is not None:
        parts.append(f"pinned to cores {_ranges(half.cores)}")
    if half.prefix:
        parts.append("under " + shlex.join(half.prefix))
    parts += half.notes
    inside = " ".join(f"{key}={value}" for key, value in half.in_process().items())
    if inside:
        parts.append(f"inside the job (its own code applies these): {inside}")
    return "; ".join(parts)


def _ranges(cores: list[int]) -> str:
    return ",".join(str(core) for core in cores)
