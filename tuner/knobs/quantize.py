"""Quantization of inference models (torchao): dynamic int8, weight-only int8/4/2/1, static
int8 through PT2E. Changes numerics, so every choice passes the accuracy guard first."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup
from tuner.knobs.device import on_cuda

NONE = "none"


class Quantize(Knob):
    name = "quantize"
    help = ("inference only: none, dynamic_int8, weight_int8, weight_int4, weight_int2, "
            "weight_int1 (torchao quantize_), static_int8 (torchao PT2E + x86 inductor)")
    default = NONE
    allowed = (NONE, "dynamic_int8", "weight_int8", "weight_int4", "weight_int2", "weight_int1",
               "static_int8")
    changes_numerics = True
    inference_only = True

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == NONE:
            return None
        try:
            metadata.version("torchao")
        except metadata.PackageNotFoundError:
            return (f"quantize={value}: torchao is not installed (pip install torchao; the main "
                    "install has it)")
        if value == "static_int8" and on_cuda(values):
            return "quantize=static_int8 uses the x86 inductor quantizer: CPU only"
        if value == "static_int8" and host.cxx_compiler is None:
            return "quantize=static_int8 is lowered by inductor: needs a C++ compiler " \
                   "(apt-get install g++)"
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        setup.quantize = value
