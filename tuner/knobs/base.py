"""What a knob is: one dimension of how a job runs, and the three moments it may act.

A knob (a) validates the choices a space offers for it, (b) says whether a choice can run on
this worker and if not why, before anything expensive is built, and (c) applies a choice: to the
process environment before torch starts, and to the `RunSetup` the workload runner honours.
Knob modules import torch only inside methods that run in the trial process.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tuner.errors import did_you_mean, show


class UnsupportedChoice(Exception):
    """Raised in the trial process when a choice turns out not to work for this workload on
    this worker (found only by trying, e.g. a quantizer that cannot handle the model): the
    trial is recorded as unsupported with the reason, and the study skips the choice after."""

    def __init__(self, choice: dict[str, Any], reason: str) -> None:
        super().__init__(reason)
        self.choice = choice
        self.reason = reason


@dataclass
class RunSetup:
    """How the trial process runs the workload; knobs fill it in, the runner reads it."""

    device: str = "cpu"  # or "cuda" (the trial process sees only the GPU Ray gave it)
    batch_size: int = 32
    num_workers: int = 0
    prefetch_factor: int | None = None  # batches each loader worker keeps ready; None: torch's
    persistent_workers: bool = False  # loader workers kept alive between passes over the data
    pin_memory: bool = False  # page-locked host batches: faster, asynchronous copies to a GPU
    non_blocking: bool = False  # host-to-GPU copies overlap the step (needs pinned memory)
    intra_op_threads: int | None = None  # None: torch's default
    interop_threads: int | None = None  # None: torch's default
    autocast_dtype: str | None = None  # "bfloat16" / "float16"; None: no autocast
    grad_scaling: bool = False  # fp16 training on a GPU: torch.amp.GradScaler
    tf32: bool | None = None  # CUDA fp32 matmul/conv on TF32 tensor cores; None: torch's default
    cudnn_benchmark: bool = False  # cuDNN times its algorithms per input shape, keeps the fastest
    channels_last: bool = False
    compile_options: dict[str, Any] | None = None  # kwargs of torch.compile; None: eager
    ipex_optimize: bool = False  # ipex.optimize(model, optimizer, dtype) before compile
    quantize: str = "none"  # inference only: see tuner/quantization.py
    backend: str = "torch"  # inference only: torch or onnxruntime


@dataclass(frozen=True)
class Host:
    """What a worker can do, read cheaply in the trial process before building anything."""

    cpu_count: int
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    has_cuda: bool = False
    cxx_compiler: str | None = None
    gpu_name: str = ""  # the first visible GPU (a trial sees only the one Ray gave it)
    gpu_capability: tuple[int, int] = (0, 0)
    gpu_bf16: bool = False
    torch_cuda: str | None = None  # CUDA version torch was built for; None: a CPU-only build

    @classmethod
    def detect(cls) -> Host:
        import torch  # the trial process has it; the driver never calls this

        has_cuda = torch.cuda.is_available()
        return cls(
            cpu_count=len(os.sched_getaffinity(0)),
            cpu_flags=frozenset(_cpu_flags()),
            has_cuda=has_cuda,
            cxx_compiler=shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++"),
            gpu_name=torch.cuda.get_device_name(0) if has_cuda else "",
            gpu_capability=torch.cuda.get_device_capability(0) if has_cuda else (0, 0),
            gpu_bf16=has_cuda and torch.cuda.is_bf16_supported(),
            torch_cuda=torch.version.cuda,
        )

    def no_gpu_reason(self) -> str:
        """Why this process cannot use a GPU, in terms a user can act on."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        build = (f"torch built for CUDA {self.torch_cuda}" if self.torch_cuda
                 else "torch is a CPU-only build (install a CUDA wheel)")
        given = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        return f"no CUDA GPU visible to this trial process ({build}{given})"


# the CPU flags a trial reports (info "cpu_features"): what tuner/priors.py decides by
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile",
                "amx_int8")


def _cpu_flags() -> set[str]:
    if platform.system() != "Linux":
        return set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


class Knob:
    """Base class: subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    help: ClassVar[str]
    default: ClassVar[Any]
    allowed: ClassVar[tuple[Any, ...] | None] = None  # fixed vocabulary, if any
    integer: ClassVar[bool] = False  # may be searched as an integer range
    # a log range of it is searched at its powers of two (and its ends), not at every integer
    log_range_in_powers_of_two: ClassVar[bool] = False
    changes_numerics: ClassVar[bool] = False  # the accuracy guard must check its choices
    inference_only: ClassVar[bool] = False  # a non-default choice needs an inference workload

    def check_choice(self, value: Any) -> Any:
        """Return the choice normalised, or raise ValueError saying what is allowed."""
        if isinstance(value, bool) and self.allowed is not None and "on" in self.allowed:
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        if self.allowed is not None:
            if value not in self.allowed:
                hint = did_you_mean(value, map(str, self.allowed))
                raise ValueError(f"{hint}must be one of {list(self.allowed)}, got {show(value)}")
            return value
        if self.integer:
            if isinstance(value, bool) or not isinstance(value, int) or value < self.min_value:
                raise ValueError(f"must be an integer >= {self.min_value}, got {show(value)}")
            return value
        return value

    min_value: ClassVar[int] = 0

    def is_active(self, values: Mapping[str, Any]) -> bool:
        """Whether this knob means anything given the other knobs' values."""
        return True

    def cpus(self, value: Any, node_cpus: int) -> int:
        """Cores this choice occupies, for the trial's Ray CPU request."""
        return 0

    def gpus(self, value: Any) -> int:
        """GPUs this choice needs, for the trial's Ray GPU request."""
        return 0

    def process_env(self, value: Any, values: Mapping[str, Any]) -> dict[str, str]:
        """Environment variables the trial process must start with (LD_PRELOAD values of
        several knobs are joined); `values` is the trial's whole config."""
        return {}

    def pins_cores(self, value: Any) -> bool:
        """Whether this choice pins the trial process to its own cores."""
        return False

    def launch_prefix(self, value: Any, cores: list[int] | None) -> tuple[list[str], str]:
        """A command the trial process is started under (e.g. numactl), and a note saying
        what it did; run by the supervisor on the trial's node."""
        return [], ""

    def unsupported_reason(self, value: Any, host: Host,
                           values: Mapping[str, Any]) -> str | None:
        """Why this worker cannot honour the choice, or None if it can (`values`: the trial's
        whole config, for choices that depend on another, e.g. bf16 on a GPU)."""
        return None

    def apply(self, value: Any, setup: RunSetup) -> None:
        """Record the choice in the setup (runs in the trial process)."""


class Switch(Knob):
    """An off/on knob (a bare YAML off/on, read as a boolean, is accepted too)."""

    default = "off"
    allowed = ("off", "on")
