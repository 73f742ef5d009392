"""Execution backend of an inference model: torch itself, or ONNX Runtime (the model exported
with torch.onnx's dynamo exporter, run by an ORT session with the trial's thread settings)."""

from __future__ import annotations

from importlib import util
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup

TORCH = "torch"
ORT_PACKAGES = {"onnxruntime": "onnxruntime", "onnx": "onnx", "onnxscript": "onnxscript"}


class Backend(Knob):
    name = "backend"
    help = "inference only: torch, or onnxruntime (exported to ONNX, run by an ORT session)"
    default = TORCH
    allowed = (TORCH, "onnxruntime")
    changes_numerics = True  # ORT's kernels round differently
    inference_only = True

    def unsupported_reason(self, value: Any, host: Host) -> str | None:
        if value == TORCH:
            return None
        missing = [package for module, package in ORT_PACKAGES.items()
                   if util.find_spec(module) is None]
        if missing:
            return (f"backend={value}: {', '.join(missing)} not installed "
                    f"(pip install {' '.join(missing)}, or .[cpu])")
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.backend = value
