"""Intel Extension for PyTorch: `ipex.optimize(model, optimizer, dtype)`.

IPEX is archived upstream and optional: its last release (2.8.0) requires torch 2.8, so with
any other torch the choice is skipped with that reason instead of failing at import. Checked by
package metadata, without importing it (a mismatched IPEX fails loudly at import).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup
from tuner.knobs.device import on_cuda

PACKAGE = "intel_extension_for_pytorch"


def ipex_problem() -> str | None:
    """Why IPEX cannot be used with this torch, or None when it can."""
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return ("IPEX is not installed (optional: pip install intel-extension-for-pytorch; "
                "its last release, 2.8.0, needs torch 2.8)")
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "torch is not installed"
    if version.split(".")[:2] != torch_version.split("+")[0].split(".")[:2]:
        return (f"IPEX {version} needs torch {'.'.join(version.split('.')[:2])}, but this "
                f"torch is {torch_version}")
    return None


class Ipex(Knob):
    name = "ipex"
    help = "Intel Extension for PyTorch: none, or ipex.optimize(model, optimizer, dtype)"
    default = "none"  # not "off": YAML reads a bare off as false
    allowed = ("none", "optimize")
    changes_numerics = True  # weight prepacking and bf16 kernels

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == "none":
            return None
        if on_cuda(values):
            return f"ipex={value}: IPEX optimizes for Intel CPUs and GPUs, not CUDA devices"
        problem = ipex_problem()
        return f"ipex={value}: {problem}" if problem else None

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.ipex_optimize = value == "optimize"
