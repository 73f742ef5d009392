"""The accuracy guard's driver half: a candidate's guard value against the baseline's. (The
trial process runs the experiment: tuner.worker.guard.) Plain arithmetic, no Optuna: the GPU
check script uses it on a machine without the driver's packages.
"""

from __future__ import annotations

import math

from tuner import metrics as mx
from tuner.driver.space.model import Guard


def violation(loss: float, reference: float, tolerance: float, mode: str) -> float:
    """How far past the tolerance the guard's value moved; <= 0 is within it."""
    if not math.isfinite(loss):
        return math.inf
    distance = abs(loss - reference)
    if mode == "relative":
        distance /= max(abs(reference), 1e-12)
    return distance - tolerance


def guard_reason(guard: Guard, metrics: dict[str, float], scenario: str = "train") -> str:
    """Why a config was rejected, in words: how far its guard value moved."""
    loss, ref = metrics[mx.GUARD_LOSS], metrics[mx.GUARD_REFERENCE]
    moved = abs(loss - ref) / abs(ref) if guard.mode == "relative" else abs(loss - ref)
    unit = "%" if guard.mode == "relative" else ""
    scale = 100 if guard.mode == "relative" else 1
    what = ("quality" if scenario == "infer"  # the workload's metric on real data
            else f"guard loss (mean over {guard.steps + 1} steps)")
    return (f"{what} {loss:.4f} vs baseline {ref:.4f}: moved "
            f"{moved * scale:.3g}{unit}, tolerance {guard.tolerance * scale:.3g}{unit}")
