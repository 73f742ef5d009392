"""What compiling costs and when it pays: a compiled trial against its eager twin (the same
config with compile none), and the throughput of a job of a given length, compile included.

A compiled model's first step holds the compile (`compile_s`, seconds beyond a steady step);
the saving is per step. A job shorter than compile_s / saving steps is slower compiled, so a
search for a short job should not crown compile: `job_samples_per_sec` charges the compile
over `measure.job_steps` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuner import metrics as mx
from tuner.driver.ranking import Row
from tuner.driver.strategy import config_key

EAGER = "none"


def job_samples_per_sec(samples_per_sec: float, step_s: float, compile_s: float,
                        job_steps: int) -> float:
    """Samples a second over a job of `job_steps` steps whose first pays `compile_s`."""
    if samples_per_sec <= 0 or step_s <= 0:
        return 0.0
    return samples_per_sec / (1.0 + compile_s / (job_steps * step_s))


def eager_twin(knobs: dict[str, Any]) -> dict[str, Any]:
    """The same config, not compiled."""
    twin = {name: value for name, value in knobs.items() if name != "compile_mode"}
    twin["compile"] = EAGER
    return twin


@dataclass(frozen=True)
class Payoff:
    compiled: Row
    eager: Row
    compile_s: float
    saving_s: float  # per step; <= 0: compiling never pays

    @property
    def steps(self) -> float:
        return self.compile_s / self.saving_s if self.saving_s > 0 else math.inf

    def describe(self) -> str:
        mode = self.compiled.knobs.get("compile_mode")
        how = f"{self.compiled.knobs['compile']}{f' {mode}' if mode else ''}"
        if self.saving_s <= 0:
            return (f"compile never pays off: trial {self.compiled.number} ({how}) is "
                    f"{-self.saving_s:.3g} s a step slower than trial {self.eager.number} "
                    "(eager)")
        return (f"compile pays off after ~{math.ceil(round(self.steps, 6)):,} steps: trial "
                f"{self.compiled.number} ({how}, compile {self.compile_s:.1f} s) is "
                f"{self.saving_s:.3g} s a step faster than trial {self.eager.number} (eager)")


def payoff_of(row: Row, measured: list[Row]) -> Payoff | None:
    """A compiled measured trial against its eager twin among `measured`, if there is one."""
    if row.knobs.get("compile", EAGER) == EAGER or mx.COMPILE_S not in row.metrics:
        return None
    twin = config_key(eager_twin(row.knobs))
    eager = next((other for other in measured if config_key(
        {name: value for name, value in other.knobs.items() if name != "compile_mode"})
        == twin and other.status == "ok"), None)
    median = row.metrics.get(mx.STEP_TIME_MEDIAN_S)
    if eager is None or median is None or mx.STEP_TIME_MEDIAN_S not in eager.metrics:
        return None
    return Payoff(row, eager, row.metrics[mx.COMPILE_S],
                  eager.metrics[mx.STEP_TIME_MEDIAN_S] - median)


def payoffs(top: list[Row], all_rows: list[Row]) -> list[Payoff]:
    """The compiled configs among `top` with a measured eager twin."""
    measured = [row for row in all_rows if row.status == "ok" and row.duplicate_of is None]
    found = (payoff_of(row, measured) for row in top)
    return [payoff for payoff in found if payoff is not None]
