"""Statistics of raw step times: median, IQR and coefficient of variation, as in
torch.utils.benchmark. Pure functions, shared: the trial process measures with them, the node
supervisor sums up a killed trial's steps with them, the driver and tests read them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class StepStats:
    median_s: float
    iqr_s: float
    cv: float  # standard deviation / mean; 0 for a single sample
    count: int


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
    return StepStats(median_s=median, iqr_s=q3 - q1, cv=cv, count=len(times))


def percentile(values: list[float], percent: float) -> float:
    """The `percent`-th percentile, linear between order statistics (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
