"""What a worker can do, seen from a fresh process like a trial's: `python -m tuner.probe`.

Prints JSON: torch's view of the machine and, for each knob choice, whether this worker can
honour it and if not why. `tuner doctor` runs it; the driver never imports torch itself.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from typing import Any


def ipex_status(torch_version: str) -> str:
    """IPEX is optional and archived upstream: say whether it is here and fits this torch,
    without importing it (a mismatched IPEX fails loudly at import)."""
    try:
        version = metadata.version("intel_extension_for_pytorch")
    except metadata.PackageNotFoundError:
        return ("not installed (optional; its last release, 2.8.0, requires torch 2.8: "
                f"this torch is {torch_version})")
    if version.split(".")[:2] != torch_version.split("+")[0].split(".")[:2]:
        return f"{version} installed, but it requires torch {'.'.join(version.split('.')[:2])}: " \
               f"this torch is {torch_version}, so it cannot be used"
    return f"{version} installed, matches torch {torch_version}"


def knob_choices() -> dict[str, list[Any]]:
    from tuner.knobs import REGISTRY

    choices: dict[str, list[Any]] = {}
    for name, knob in REGISTRY.items():
        if knob.allowed is not None:
            choices[name] = list(knob.allowed)
    return choices


def probe() -> dict[str, Any]:
    import torch

    from tuner.knobs import REGISTRY, Host

    host = Host.detect()
    availability: dict[str, dict[str, str | None]] = {}
    for name, values in knob_choices().items():
        availability[name] = {str(v): REGISTRY[name].unsupported_reason(v, host) for v in values}
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads_default": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "cxx_compiler": host.cxx_compiler,
        "ipex": ipex_status(torch.__version__),
        "availability": availability,
    }


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)
