"""torch.compile: backend and mode. Compile time is paid in warm-up and reported apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.knobs.base import Host, Knob, RunSetup
from tuner.knobs.device import on_cuda
from tuner.knobs.ipex import ipex_problem

NONE = "none"


class CompileBackend(Knob):
    name = "compile"
    help = "torch.compile backend ('none': eager)"
    default = NONE
    # "ipex": IPEX's backend, registered at its import
    allowed = (NONE, "inductor", "aot_eager", "ipex")
    changes_numerics = True

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == "inductor" and host.cxx_compiler is None:  # CPU kernels; Triton's launchers
            return "compile=inductor needs a C++ compiler (apt-get install g++)"
        if value == "ipex" and on_cuda(values):
            return "compile=ipex: IPEX's backend compiles for Intel CPUs and GPUs, not CUDA devices"
        if value == "ipex":
            problem = ipex_problem()
            return f"compile=ipex: {problem}" if problem else None
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        if value != NONE:
            setup.compile_options = {**(setup.compile_options or {}), "backend": value}


class CompileMode(Knob):
    name = "compile_mode"
    help = "torch.compile mode; only when compile is on"
    default = "default"
    allowed = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    changes_numerics = True

    def is_active(self, values: Mapping[str, Any]) -> bool:
        return values.get("compile", NONE) == "inductor"

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        if value == "reduce-overhead" and not on_cuda(values):
            return "compile_mode=reduce-overhead uses CUDA graphs: it needs device=cuda"
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        if setup.compile_options is None:  # eager: a mode means nothing (and must not compile)
            return
        options = dict(setup.compile_options)
        if value != "default":
            options["mode"] = value
        setup.compile_options = options
