"""`tuner doctor`: what the tuner sees on this machine, and which knob choices it can run.

The machine facts come from /proc and /sys; torch's view and the knob verdicts come from a fresh
process (`python -m tuner.probe`), as a trial would see them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tuner import runtime_libs

ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
             "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16"}


def cpu_facts() -> dict[str, Any]:
    model, flags, cores = "", set[str](), set[tuple[str, str]]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            physical = ""
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and not model:
                    model = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "physical id":
                    physical = value
                elif key == "core id":
                    cores.add((physical, value))
    except OSError:
        pass
    nodes = sorted(Path("/sys/devices/system/node").glob("node[0-9]*"))
    return {
        "model": model or "unknown",
        "isa": {label: flag in flags for flag, label in ISA_FLAGS.items()},
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "physical_cores": len(cores) or None,
        "numa_nodes": len(nodes) or 1,
        "numactl": shutil.which("numactl"),
    }


def memory_gib() -> tuple[float, float]:
    values = {}
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return values.get("MemTotal", 0.0), values.get("MemAvailable", 0.0)


def versions() -> dict[str, str]:
    found = {}
    for package in ("tuner", "torch", "torchvision", "optuna", "ray", "mlflow",
                    "intel-openmp", "intel_extension_for_pytorch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def run_probe() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tuner.worker.probe"], capture_output=True,
                          text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"the probe process failed: {last}"}
    return json.loads(done.stdout)


def facts() -> dict[str, Any]:
    """Everything `tuner doctor` knows, as plain data (`--format json`)."""
    total, available = memory_gib()
    return {"cpu": cpu_facts(), "memory_gib": {"total": round(total, 1),
                                               "available": round(available, 1)},
            "torch": run_probe(),
            "preloadable": {name: str(path) if (path := runtime_libs.find(name)) else None
                            for name in runtime_libs.LIBRARIES},
            "versions": versions()}


def report(found: dict[str, Any] | None = None) -> str:
    found = found or facts()
    cpu, probe, memory = found["cpu"], found["torch"], found["memory_gib"]
    isa = ", ".join(f"{label} {'yes' if present else 'no'}"
                    for label, present in cpu["isa"].items())
    lines = [
        f"cpu: {cpu['model']}",
        f"  isa: {isa}",
        (f"  cores: {cpu['logical_cpus']} logical, {cpu['physical_cores'] or '?'} physical, "
        f"{cpu['usable_cpus']} usable here; NUMA nodes: {cpu['numa_nodes']} "
        f"(numactl: {cpu['numactl'] or 'not found: apt-get install numactl'})"),
        f"memory: {memory['total']:.1f} GiB, {memory['available']:.1f} GiB available",
    ]
    if "error" in probe:
        lines.append(f"torch: {probe['error']}")
    else:
        gpus = ", ".join(probe["gpus"]) or "none visible"
        lines += [
            (f"torch: {probe['torch']}, CPU kernels {probe['cpu_capability']}, "
            f"{probe['torch_threads_default']} threads by default; CUDA {probe['torch_cuda']}; "
            f"GPUs: {gpus}"),
            "  C++ compiler for inductor: "
            f"{probe['cxx_compiler'] or 'not found (apt-get install g++)'}",
            f"  IPEX: {probe['ipex']}",
        ]
    lines.append("libraries a trial can preload:")
    for name, path in found["preloadable"].items():
        lines.append(f"  {name}: {path or 'not found: ' + runtime_libs.LIBRARIES[name].install}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in found["versions"].items()))
    if "availability" in probe:
        lines.append("knob choices on this machine:")
        for knob, verdicts in probe["availability"].items():
            ok = [choice for choice, reason in verdicts.items() if reason is None]
            lines.append(f"  {knob}: {', '.join(ok) or 'none'}")
            lines += [f"    {choice}: no - {reason}"
                      for choice, reason in verdicts.items() if reason]
    return "\n".join(lines)
