"""Statistics of raw step times: median, IQR and coefficient of variation, as in
torch.utils.benchmark. Pure functions, shared: the trial process measures with them, the node
supervisor sums up a killed trial's steps with them, the driver and tests read them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class StepStats:
    median_s: float
    iqr_s: float
    cv: float  # standard deviation / mean; 0 for a single sample
    count: int
    # the median's 95% interval half-width over the median (McGill's notch, 1.58 IQR / sqrt n):
    # how well the figure a trial is ranked by is known, whatever the steps' spread
    median_error: float = 0.0


def step_stats(step_times_s: list[float]) -> StepStats:
    """Median, inter-quartile range and coefficient of variation of raw step times."""
    if not step_times_s:
        raise ValueError("no step times to summarise")
    times = sorted(step_times_s)
    median = statistics.median(times)
    if len(times) >= 2:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
        mean = statistics.fmean(times)
        cv = statistics.pstdev(times) / mean if mean > 0 else 0.0
    else:
        q1 = q3 = times[0]
        cv = 0.0
    error = 1.58 * (q3 - q1) / math.sqrt(len(times)) / median if median > 0 else 0.0
    return StepStats(median_s=median, iqr_s=q3 - q1, cv=cv, count=len(times), median_error=error)


# Below this many steps the IQR is too coarse to judge a median by: the cv alone decides.
MEDIAN_RULE_MIN_STEPS = 20


def too_noisy(stats: StepStats, max_cv: float, max_median_error: float) -> bool:
    """Whether a round's median is too uncertain to rank by. A few steps (a count-measured
    trial): their cv above `max_cv`. Many steps (measured by time): only if the median's 95%
    interval is also wider than `max_median_error`, since hundreds of spread steps still pin
    the median down (issue 9: the cv rule left 27 of 80 grid configs unranked)."""
    if stats.cv <= max_cv:
        return False
    return stats.count < MEDIAN_RULE_MIN_STEPS or stats.median_error > max_median_error


def percentile(values: list[float], percent: float) -> float:
    """The `percent`-th percentile, linear between order statistics (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
