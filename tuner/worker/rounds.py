"""The trial's measurement within its time: rounds of timed steps (another round while the
steps are noisy, if it fits), planned to end before the supervisor's kill with the guard's time
left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner import progress as pg
from tuner.stats import StepStats, step_stats, too_noisy
from tuner.trial import TrialConfig

if TYPE_CHECKING:
    from tuner.worker.runner import Run

# Left between the end of the trial's work and its supervisor's kill: writing the result and
# exiting take well under a second; the supervisor looks once a second.
DEADLINE_MARGIN_S = 3.0
SAFETY = 1.25  # estimates of what is left (another round, the guard) are padded by this


@dataclass
class Timed:
    """The measurement: its first round (warm-up, compile), the kept round and its stats."""

    first: Any
    timing: Any
    stats: StepStats
    rounds: int
    timed_s: float
    left_noisy: bool  # a noisy round kept for want of time


def measure_rounds(config: TrialConfig, setup: Any, run: Run, log: pg.ProgressLog,
                   build_s: float) -> Timed:
    """The tuner's own loop over `run`'s batches (another epoch past the data's end)."""
    from tuner.worker import measure

    data = measure.Epochs(run.batches)
    return measure.drive(timed_rounds(config, setup.batch_size, run.synchronize, run.compiled,
                                      log, build_s), lambda: run.step(data.next()))


def timed_rounds(config: TrialConfig, batch_size: int, synchronize: Any, compiled: bool,
                 log: pg.ProgressLog, build_s: float) -> Generator[None, None, Timed]:
    """The measurement as a step clock (`measure.step_clock`): yields before each step, for
    the tuner's loop or a user's own (`tuner.worker.user_job`) to run one."""
    stop_above_step_s = (batch_size / config.stop_below if config.stop_below > 0
                         else math.inf)
    reserve_s = _guard_reserve(config, batch_size, build_s, compiled)
    rounds = yield from _timed_rounds(synchronize, config, stop_above_step_s, log,
                                      _deadline(config), reserve_s, build_s)
    return Timed(*rounds)


class NoTimedStep(ValueError):
    """The loop ended (out of data) before one step was timed."""


def _deadline(config: TrialConfig) -> float:
    """The trial's end on this process's perf_counter clock, less a margin to write the result;
    infinite outside a supervisor (no limit was set)."""
    if config.deadline_epoch_s <= 0:
        return math.inf
    margin = max(DEADLINE_MARGIN_S, 0.02 * config.time_limit_s)
    return time.perf_counter() + (config.deadline_epoch_s - time.time()) - margin


def _guard_reserve(config: TrialConfig, batch_size: int, build_s: float,
                   compiled: bool) -> Any:
    """What the guard will need after the timed steps, from what timing has seen so far: a new
    model (build_s), its own compile (a compiled model compiles again for the guard's batch),
    and steps + 1 steps at the guard's batch size (at least a tenth of a timed step each)."""
    if not config.guard.run:
        return lambda timing, pace_s: 0.0
    ratio = max(config.guard.batch_size / max(batch_size, 1), 0.1)

    def reserve_s(timing: Any, pace_s: float) -> float:  # between timed steps: O(1)
        compile_s = (max(0.0, timing.warmup_times_s[0] - pace_s)
                     if compiled and timing.warmup_times_s else 0.0)
        return SAFETY * (build_s + compile_s + (config.guard.steps + 1) * pace_s * ratio)

    return reserve_s


def _timed_rounds(synchronize: Any, config: TrialConfig, stop_above_step_s: float,
                  log: pg.ProgressLog, deadline: float, reserve_s: Any,
                  build_s: float) -> Generator[None, None, tuple[Any, Any, Any, int, float, bool]]:
    """Time the steps; while they are too noisy (`stats.too_noisy`), time a fresh round (a noisy
    neighbour passes, a frequency settles), up to `remeasure` more, each only if it can end
    before the deadline with the guard's time left. Keeps the steadiest round: its median is
    the trial's figure; the first round's warm-up holds the compile time. The last value says
    a noisy round was kept for want of time. A loop out of data ends the rounds there."""
    from tuner.worker import measure

    settings = config.measure

    def one_round(stop_above: float = math.inf) -> Generator[None, None, Any]:
        log.phase(pg.WARMUP if settings.warmup_steps else pg.TIMING, build_s=build_s)
        warmups = 0

        def on_step(kind: str, seconds: float) -> None:
            nonlocal warmups
            log.step(kind, seconds)
            if kind == "warmup":
                warmups += 1
                if warmups == settings.warmup_steps:
                    log.phase(pg.TIMING)

        return (yield from measure.step_clock(settings, synchronize, stop_above_step_s=stop_above,
                                              deadline=deadline, reserve_s=reserve_s,
                                              on_step=on_step))

    first = yield from one_round(stop_above_step_s)
    if not first.step_times_s:
        raise NoTimedStep(f"the loop ended after {len(first.warmup_times_s)} warm-up step(s) "
                          "and no timed step")
    best = (first, step_stats(first.step_times_s))
    rounds = 1
    timed_s = sum(first.step_times_s)
    left_noisy = False
    out_of_data = first.out_of_data
    while (too_noisy(best[1], settings.max_cv, settings.max_median_error)
           and rounds <= settings.remeasure and not first.pruned
           and not out_of_data):
        needed_s = (settings.warmup_steps + settings.min_timed_steps) * best[1].median_s
        if time.perf_counter() + SAFETY * needed_s > deadline - reserve_s(best[0],
                                                                          best[1].median_s):
            left_noisy = True
            break
        timing = yield from one_round()
        out_of_data = timing.out_of_data
        rounds += 1
        timed_s += sum(timing.step_times_s)
        if timing.step_times_s and (stats := step_stats(timing.step_times_s)).cv < best[1].cv:
            best = (timing, stats)
    return first, best[0], best[1], rounds, timed_s, left_noisy
