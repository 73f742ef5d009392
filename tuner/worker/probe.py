"""What a worker can do, seen from a fresh process like a trial's: `python -m tuner.probe`.

Prints JSON: torch's view of the machine and, for each knob choice, whether this worker can
honour it and if not why. `tuner doctor` runs it; the driver never imports torch itself.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from typing import Any

from tuner.knobs.ipex import PACKAGE, ipex_problem


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
        availability[name] = {str(v): REGISTRY[name].unsupported_reason(
            v, host, {"device": "cuda" if host.has_cuda else "cpu", name: v})
                              for v in values}
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads_default": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpus": [_gpu(torch, i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "torch_cuda": torch.version.cuda or "none (a CPU-only build)",
        "cxx_compiler": host.cxx_compiler,
        "ipex": ipex_problem() or f"{metadata.version(PACKAGE)}, matches this torch",
        "availability": availability,
    }


def _gpu(torch: Any, index: int) -> str:
    props = torch.cuda.get_device_properties(index)
    return (f"{props.name} (compute capability {props.major}.{props.minor}, "
            f"{props.total_memory / 2**30:.0f} GiB)")


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)
