"""Running one trial process directly (the Ray task's body is a plain function), for tests
that need a trial's own view without a whole search."""

from __future__ import annotations

from typing import Any

from tuner.node.supervisor import run_trial_process
from tuner.trial import GuardSettings, MeasureSettings, TrialConfig, TrialResult, WorkloadSpec

KNOBS = {"batch_size": 16, "num_workers": 0, "dtype": "fp32", "memory_format": "contiguous",
         "compile": "none", "threads": 1}


def trial_config(workload: str = "tiny_cnn", time_limit_s: float = 120, guard: bool = True,
                 timed_steps: int = 4, measure: MeasureSettings | None = None,
                 options: dict[str, Any] | None = None, **fields: Any) -> TrialConfig:
    """A small trial of `workload`; knob values and TrialConfig fields by keyword."""
    config_fields = {k: fields.pop(k)
                     for k in ("cpus", "exclusive_cores", "memory_limit_mb", "pass_env")
                     if k in fields}
    return TrialConfig(
        study="t", trial_number=7, workload=WorkloadSpec(workload, options or {}),
        knobs={**KNOBS, **fields},
        measure=measure or MeasureSettings(warmup_steps=1, timed_steps=timed_steps,
                                           min_timed_steps=2, max_timed_s=5),
        guard=GuardSettings(run=guard, steps=3, batch_size=8, seed=0),
        time_limit_s=time_limit_s, **config_fields)


def run(config: TrialConfig) -> TrialResult:
    return TrialResult.from_dict(run_trial_process(config.to_json(), config.time_limit_s))
