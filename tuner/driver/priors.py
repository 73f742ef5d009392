"""Known-good configs for the hardware the baseline ran on, tried right after it.

The baseline trial reports the features of its machine (CPU flags of note, the GPU's compute
capability); a prior whose condition holds there and whose values the space allows is queued
next, so a search on a CPU with AVX512-BF16 measures bf16 + channels_last at its second trial
instead of waiting for the sampler to stumble on it. A prior is a guess that costs one trial:
the sweep after it starts from whichever of baseline and priors measured best.
Driver side: it reads the baseline's reported features, never the driver's own machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.driver.space import Space

PRIOR = "prior"  # the trial role of a prior config


@dataclass(frozen=True)
class Prior:
    name: str
    applies: Callable[[dict[str, Any]], bool]  # the baseline trial's info -> holds there
    config: dict[str, Any]
    why: str


def _cpu_bf16(info: dict[str, Any]) -> bool:
    features = set(info.get("cpu_features") or ())
    return info.get("device", "cpu") == "cpu" and bool({"avx512_bf16", "amx_bf16"} & features)


def _gpu_at_least(major: int) -> Callable[[dict[str, Any]], bool]:
    def applies(info: dict[str, Any]) -> bool:
        capability = info.get("gpu_capability") or [0, 0]
        return info.get("device") == "cuda" and capability[0] >= major
    return applies


def _gpu_tensor_cores_fp16(info: dict[str, Any]) -> bool:
    capability = info.get("gpu_capability") or [0, 0]
    return info.get("device") == "cuda" and 7 <= capability[0] < 8


PRIORS = (
    Prior("cpu-bf16", _cpu_bf16, {"dtype": "bf16", "memory_format": "channels_last"},
          "the CPU runs bf16 natively (AVX512-BF16/AMX) and oneDNN's bf16 convolutions prefer "
          "channels_last"),
    Prior("gpu-bf16", _gpu_at_least(8),
          {"dtype": "bf16", "memory_format": "channels_last", "cudnn_benchmark": "on"},
          "Ampere or newer: bf16 tensor cores, channels_last convolutions, cuDNN autotuning"),
    Prior("gpu-fp16", _gpu_tensor_cores_fp16,
          {"dtype": "fp16", "memory_format": "channels_last", "cudnn_benchmark": "on"},
          "Volta/Turing: fp16 tensor cores (no bf16), channels_last convolutions"),
)


def prior_configs(space: Space, baseline_info: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(config, role) for each prior that holds on the baseline's machine and that the space
    can express (every knob searched, every value allowed) and that differs from the baseline;
    a value the space lacks drops only that part of the prior."""
    configs: list[tuple[dict[str, Any], str]] = []
    baseline = space.full_config({})
    for prior in PRIORS:
        if not prior.applies(baseline_info):
            continue
        allowed = {name: value for name, value in prior.config.items()
                   if name in space.knobs and space.knobs[name].contains(value)}
        config = space.full_config(allowed)
        if allowed and config != baseline and all(config != seen for seen, _ in configs):
            configs.append((allowed, PRIOR))
    return configs


def describe(configs: list[tuple[dict[str, Any], str]]) -> str:
    return "; ".join(", ".join(f"{name}={value}" for name, value in config.items())
                     for config, _ in configs)
