"""A trial's time limit sized from what a killed trial measured (driver side, plain arithmetic).

A baseline that runs out of time must not end the user's first search: it runs again once,
with a limit derived from the steps it did time (a machine's speed moves, a fixed limit sized
for a quiet machine will be hit), instead of a guess.
"""

from __future__ import annotations

import math

from tuner.trial import GuardSettings, MeasureSettings, ProgressInfo

HEADROOM = 1.5  # the derived need is padded by this: the machine may slow down further
GROWTH = 1.5  # and the new limit is at least this much longer than the one that was hit
DEFAULT_STARTUP_S = 15.0  # interpreter and torch imports, when the trial did not say


def needed_s(progress: ProgressInfo, measure: MeasureSettings, guard: GuardSettings) -> float:
    """Seconds a whole trial needs, from a killed trial's progress (executor.killed_result):
    start-up, model build, warm-up (its first step holds one-time costs such as compiling),
    `min_timed_steps` timed steps and the guard, each at the step time it saw. 0 when it saw
    no step at all."""
    step_s = float(progress.get("step_estimate_s", 0.0))
    if step_s <= 0:
        return 0.0
    warmups = list(progress.get("warmup_times_s", []))
    first_s = max(warmups[0], step_s) if warmups else step_s
    warmup_s = first_s + max(0, measure.warmup_steps - 1) * step_s
    batch = int(progress.get("batch_size", 0)) or guard.batch_size
    ratio = max(guard.batch_size / batch, 0.1)
    guard_s = (progress.get("build_s", 0.0) + (guard.steps + 1) * step_s * ratio
               if guard.run else 0.0)
    return (float(progress.get("startup_s", DEFAULT_STARTUP_S)) + progress.get("build_s", 0.0)
            + warmup_s + measure.min_timed_steps * step_s + guard_s)


def derived_limit_s(progress: ProgressInfo, measure: MeasureSettings, guard: GuardSettings,
                    old_limit_s: float) -> float:
    """The limit to run a timed-out trial again with: what it needs with headroom, at least
    GROWTH x the old limit, in whole minutes."""
    wanted = max(HEADROOM * needed_s(progress, measure, guard), GROWTH * old_limit_s)
    return 60.0 * math.ceil(wanted / 60.0)
