"""Whether a config the study proposed is measured: reused (the same config was measured),
skipped (known not to run here), or run, with the TrialConfig its process gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import study as st
from tuner.driver.executors.base import Executor
from tuner.driver.space import Space
from tuner.knobs import numerics_key
from tuner.trial import OOM, UNSUPPORTED, TrialConfig


@dataclass(frozen=True)
class Reuse:
    earlier: Any  # the FrozenTrial measured with the same config


@dataclass(frozen=True)
class Skip:
    status: str  # UNSUPPORTED or OOM
    reason: str


@dataclass(frozen=True)
class Run:
    config: TrialConfig
    key: str  # the numerics key: the guard's cache key


Decision = Reuse | Skip | Run


def admit(study: Any, space: Space, executor: Executor, trial_number: int,
          knobs: dict[str, Any], role: str, study_name: str, workdir: Path) -> Decision:
    """The decision for one proposed config (a skip is remembered where the study learns)."""
    again = role in (st.CONFIRM, st.SENTINEL, st.REMEASURE)  # a known config, on purpose
    duplicate = None if again else st.same_config_trial(study, knobs, trial_number)
    if duplicate is not None:
        return Reuse(duplicate)
    known = st.known_unsupported(study, knobs)
    if known is not None:
        return Skip(UNSUPPORTED, known)
    too_big = st.known_out_of_memory(study, knobs)
    if too_big is not None:
        return Skip(OOM, too_big)
    nowhere = executor.unschedulable(knobs)
    if nowhere is not None:
        st.remember_unsupported(study, *nowhere)
        return Skip(UNSUPPORTED, nowhere[1])
    key = numerics_key(knobs)
    run_guard = role == st.BASELINE or key not in st.guard_cache(study)
    time_limit_s = space.trial.time_limit_s
    if role == st.BASELINE:  # a baseline that ran out of time runs again with more
        time_limit_s = max(time_limit_s, study.user_attrs.get(st.BASELINE_LIMIT, 0))
    return Run(TrialConfig(
        study=study_name, trial_number=trial_number, workload=space.workload,
        knobs=knobs, measure=space.measure, guard=space.guard.settings(run_guard),
        time_limit_s=time_limit_s, seed=space.guard.seed,
        memory_limit_mb=space.trial.memory_mb,
        memory_share=space.trial.max_concurrent,
        exclusive_cores=space.trial.max_concurrent > 1,
        cache_dir=str((workdir / "cache").resolve()),
        stop_below=0.0 if role in (st.BASELINE, st.CONFIRM) else cut(study, space, knobs),
        pass_env=space.trial.pass_env,
        headroom=not space.workload.job and st.headroom_missing(study, knobs),
    ), key)


def cut(study: Any, space: Space, knobs: dict[str, Any]) -> float:
    """Samples/s below which this trial stops at screening: measure.prune_below x the best
    ranked trial so far on its device; 0 (never) when screening is off or the study has two
    objectives (a slow config may still be the cheapest)."""
    settings = space.measure
    if settings.prune_below <= 0 or settings.screen_s <= 0 or len(space.objectives) > 1:
        return 0.0
    device = str(knobs.get("device", "cpu"))
    speeds = [row.samples_per_sec for row in rk.ranked(rk.rows(study), mx.SAMPLES_PER_SEC)
              if row.device == device]
    return settings.prune_below * max(speeds) if speeds else 0.0
