"""Timing a trial: warm-up, then timed steps with the data loader inside the clock.

Raw step times are kept; their statistics (tuner.stats) are median, IQR and coefficient of
variation, as in torch.utils.benchmark.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from tuner.trial import MeasureSettings


def samples_per_sec(batch_size: int, median_step_s: float) -> float:
    return batch_size / median_step_s


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gpu_peak_memory_mb(device: str) -> dict[str, float]:
    """Peak GPU memory of this process: what tensors held (allocated) and what the caching
    allocator took from the driver (reserved, what counts against the GPU's capacity)."""
    if device != "cuda":
        return {}
    import torch

    return {"gpu_peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
            "gpu_peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20}


def gpu_total_mb() -> float:
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**20


@dataclass
class Timing:
    warmup_times_s: list[float] = field(default_factory=list)
    step_times_s: list[float] = field(default_factory=list)
    loader_start_s: float = 0.0
    stopped_by_time: bool = False
    pruned: bool = False  # stopped at screening: slower than the search's cut
    stopped_by_deadline: bool = False  # the next step would not have ended before the deadline
    out_of_data: bool = False  # the caller's loop ended first (a user's own loop)


def _past_deadline(timing: Timing, timed_total_s: float, now: float, deadline: float,
                   reserve_s: Callable[[Timing, float], float]) -> bool:
    """Whether one more step, at the mean pace so far, would end after the deadline less what
    the trial still needs."""
    if not timing.step_times_s or math.isinf(deadline):
        return False
    pace_s = timed_total_s / len(timing.step_times_s)
    return now + pace_s > deadline - reserve_s(timing, pace_s)


class Epochs:
    """Batches without end: past the data's end, a new epoch (as a real loop does, inside the
    step's time): measurement by time may take more steps than the data holds."""

    def __init__(self, batches: Callable[[], Iterator[Any]]) -> None:
        self.batches = batches
        self.iterator = batches()

    def next(self) -> Any:
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = self.batches()
            return next(self.iterator)


class OutOfData(Exception):
    """Thrown into `step_clock` when the caller's loop has no more batches (a user's own loop
    ended before the measurement did): it stops there with what it timed."""


def time_steps(batches: Callable[[], Iterator[Any]], step: Callable[[Any], Any],
               settings: MeasureSettings, **clock_options: Any) -> Timing:
    """`step_clock` (with `clock_options`: its synchronize, clock, stop_above_step_s,
    deadline, reserve_s, on_step) driving `step` over `batches` (past the data's end, another
    epoch). Fetching the batch is inside the step's time, as in a real training loop."""
    clock = clock_options.get("clock", time.perf_counter)
    started = clock()
    data = Epochs(batches)
    loader_start_s = clock() - started
    timing: Timing = drive(step_clock(settings, **clock_options), lambda: step(data.next()))
    timing.loader_start_s = loader_start_s
    return timing


def drive(clock: Generator[None, None, Any], step: Callable[[], Any]) -> Any:
    """Run `step` each time `clock` asks for one; what the clock returns at its end."""
    while True:
        try:
            next(clock)
        except StopIteration as end:
            return end.value
        step()


def step_clock(
    settings: MeasureSettings,
    synchronize: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    stop_above_step_s: float = math.inf,
    deadline: float = math.inf,
    reserve_s: Callable[[Timing, float], float] = lambda timing, pace_s: 0.0,
    on_step: Callable[[str, float], None] = lambda kind, seconds: None,
) -> Generator[None, None, Timing]:
    """Yields before each step, for the caller to run one (its batch fetched inside it);
    returns the Timing. A generator: the tuner's loop (`drive`) and a user's (`user_job`) are
    timed by the same rules: warm-up steps, then timed steps until `timed_steps` or
    `max_timed_s` (at least `min_timed_steps`), each from the previous one's end, read after
    `synchronize` (a GPU step returns while its kernels still run).
    Screening: once `screen_s` of steps are timed (and at least `min_timed_steps`), a median
    step slower than `stop_above_step_s` ends the timing there, `pruned`.
    Deadline (`clock` time): once a step is timed, no step starts that would, at the mean pace
    so far, end later than `deadline` minus `reserve_s(timing, pace_s)` (the time the trial
    still needs after timing, e.g. its guard): it stops there, `stopped_by_deadline`, instead
    of being killed with nothing. `on_step(kind, seconds)` sees every step as it is timed.
    What runs between two timed steps is counted in the next one: it must stay O(1).
    `OutOfData` thrown in ends it with what it has."""
    timing = Timing()
    last = clock()
    timed_start = last
    screened = settings.screen_s <= 0 or math.isinf(stop_above_step_s)
    timed_total_s = 0.0  # a running sum: the pace check costs O(1) between timed steps
    while len(timing.step_times_s) < settings.timed_steps:
        warming = len(timing.warmup_times_s) < settings.warmup_steps
        if not warming and _past_deadline(timing, timed_total_s, last, deadline, reserve_s):
            timing.stopped_by_deadline = True
            break
        try:
            yield
        except OutOfData:
            timing.out_of_data = True
            break
        synchronize()
        now = clock()
        if warming:
            timing.warmup_times_s.append(now - last)
            on_step("warmup", now - last)
            last = timed_start = now
            continue
        timing.step_times_s.append(now - last)
        timed_total_s += now - last
        on_step("timed", now - last)
        last = now
        if (not screened and len(timing.step_times_s) >= settings.min_timed_steps
                and now - timed_start >= settings.screen_s):
            screened = True  # one look, at the end of the screening window
            if statistics.median(timing.step_times_s) > stop_above_step_s:
                timing.pruned = True
                break
        if (len(timing.step_times_s) >= settings.min_timed_steps
                and now - timed_start >= settings.max_timed_s
                and len(timing.step_times_s) < settings.timed_steps):
            timing.stopped_by_time = True
            break
    return timing


# Data for at most this many batches is built; a longer measurement (by time) cycles through it
# in epochs. A user dataset that materialises its samples must not grow with `timed_steps`.
MAX_DATA_BATCHES = 256


def batches_needed(settings: MeasureSettings) -> int:
    return min(settings.warmup_steps + settings.timed_steps, MAX_DATA_BATCHES)
