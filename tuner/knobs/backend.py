"""Execution backend of an inference model: torch itself, or ONNX Runtime (the model exported
with torch.onnx's dynamo exporter, run by an ORT session with the trial's thread settings)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import util
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup
from tuner.knobs.device import on_cuda

TORCH = "torch"
ORT_PACKAGES = {"onnxruntime": "onnxruntime", "onnx": "onnx", "onnxscript": "onnxscript"}


class Backend(Knob):
    name = "backend"
    help = "inference only: torch, or onnxruntime (exported to ONNX, run by an ORT session)"
    default = TORCH
    allowed = (TORCH, "onnxruntime")
    changes_numerics = True  # ORT's kernels round differently
    inference_only = True

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == TORCH:
            return None
        if on_cuda(values):
            return "backend=onnxruntime runs on ORT's CPU provider here: use it with device=cpu"
        missing = [package for module, package in ORT_PACKAGES.items()
                   if util.find_spec(module) is None]
        if missing:
            return (f"backend={value}: {', '.join(missing)} not installed "
                    f"(pip install {' '.join(missing)}; the main install has them)")
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.backend = value
