"""Paired, interleaved confirmation: which of the two best configs is better, with an interval.

At a budget's end the incumbent (A) and its nearest challenger (B) are measured again in
fresh trials, interleaved A B, B A, A B ...: each round's two measurements are minutes apart
at most, so the machine's drift over the search (a shared VM's speed moved 3.5x in minutes,
issue 23) falls on both alike, and alternating who goes first cancels an order effect.

Fresh processes, not one long-lived process per config: half the knobs are process settings
(threads, OpenMP runtime, allocator preload, affinity) fixed when a process starts, and two
live processes on a 2-core machine would time each other.

Each round gives a ratio A/B; their geometric mean and a 95% interval (Student's t over the
log ratios) decide: the interval above 1 makes A the best; otherwise the two are tied: when
the interval shows them equal within 3% the simpler config (fewest changes from the baseline,
then more samples per dollar) is named, else (not settled) the one the pairs put ahead.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner import metrics as mx
from tuner.driver import study as st
from tuner.driver.strategy import config_key

if TYPE_CHECKING:
    from tuner.driver.ranking import Row

# Student's t, two-sided 95% (0.975 quantile), by degrees of freedom (2.0 from 60 on)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


# a tie whose interval lies within 1 +- 3% is "equivalent": the simpler config is named; a
# wider one is not settled, and the config the pairs put ahead is named (naming the simpler
# there named the truly better of two in 29 of 60 replayed searches on a Transformer grid,
# against 59 of 60 now: benchmarks/search_efficiency.py, docs/benchmarks.md)
EQUIVALENT = 0.03


def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (the table's nearest
    smaller entry: never an interval narrower than it should be)."""
    known = [d for d in T_975 if d <= df]
    return T_975[max(known)] if known else math.inf


@dataclass(frozen=True)
class Paired:
    """The verdict of a paired confirmation between the two best configs."""

    named: Row  # the config reported best: its median confirming measurement
    other: Row  # the other config's median confirming measurement
    ratio: float  # named over other on the objective, better > 1 (geometric mean of rounds)
    low: float  # the ratio's 95% interval (nan with a single round)
    high: float
    pairs: int
    decided: bool  # the interval excludes 1; else tied, and `named` is the simpler config
    simpler_by: str = ""  # a tie: why `named` was chosen

    def describe(self) -> str:
        interval = (f"95% interval {self.low:.2f}-{self.high:.2f}" if self.pairs > 1
                    else "one round: no interval")
        head = (f"paired confirmation: trial {self.named.number}'s config vs trial "
                f"{self.other.number}'s, {self.ratio:.2f}x ({interval}, {self.pairs} rounds "
                "interleaved)")
        if self.decided:
            return f"{head}: better, the interval excludes 1"
        return f"{head}: tied, the interval includes 1; named the {self.simpler_by}"

    def metrics(self) -> dict[str, float]:
        """For the search's MLflow run."""
        figures = {"paired_ratio": self.ratio, "paired_rounds": float(self.pairs),
                   "paired_decided": float(self.decided)}
        if self.pairs > 1:
            figures.update(paired_ratio_low=self.low, paired_ratio_high=self.high)
        return figures


def paired(rows: list[Row], objective: str, baseline_knobs: dict[str, Any] | None
           ) -> Paired | None:
    """The verdict of the newest paired confirmation among `rows` (measured trials), or None
    when there is none (no confirmation, or one config only)."""
    rounds = _latest_rounds(rows)
    if rounds is None:
        return None
    by_config: dict[str, dict[str, Row]] = {}
    for row in rounds:
        by_config.setdefault(config_key(row.knobs), {})[row.pair or ""] = row
    if len(by_config) < 2:
        return None
    sign = mx.sort_key(objective)  # -1: higher is better

    def median_value(measured: dict[str, Row]) -> float:
        return statistics.median(row.metrics.get(objective, 0.0) for row in measured.values())

    first, second = sorted(by_config.values(), key=lambda m: sign * median_value(m))[:2]
    logs = [-sign * math.log(a / b) for a, b in (
        (first[key].metrics.get(objective, 0.0), second[key].metrics.get(objective, 0.0))
        for key in sorted(set(first) & set(second))) if a > 0 and b > 0]
    if not logs:
        return None
    mean = statistics.fmean(logs)
    half = (t_975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
            if len(logs) > 1 else math.nan)
    low, high = math.exp(mean - half), math.exp(mean + half)
    decided = len(logs) > 1 and (low > 1 or high < 1)
    if decided and high < 1:  # the second by median is better by the pairs: it leads
        first, second, mean, low, high = second, first, -mean, 1 / high, 1 / low
    a, b = _median_row(first, objective), _median_row(second, objective)
    if decided:
        return Paired(a, b, math.exp(mean), low, high, len(logs), True)
    equivalent = len(logs) > 1 and low >= 1 / (1 + EQUIVALENT) and high <= 1 + EQUIVALENT
    named, why = _tie_break(a, b, baseline_knobs, _incumbents(rows), equivalent, mean >= 0)
    ratio = math.exp(mean) if named is a else math.exp(-mean)
    low, high = (low, high) if named is a else (1 / high, 1 / low)
    return Paired(named, b if named is a else a, ratio, low, high, len(logs), False, why)


def _latest_rounds(rows: list[Row]) -> list[Row] | None:
    """The measured confirming trials of the newest confirmation pass (pair "PASS:ROUND")."""
    paired_rows = [row for row in rows if row.pair]
    if not paired_rows:
        return None
    newest = max(paired_rows, key=lambda row: row.number).pair or ""
    this_pass = newest.split(":", 1)[0]
    return [row for row in paired_rows if (row.pair or "").split(":", 1)[0] == this_pass]


def _median_row(measured: dict[str, Row], objective: str) -> Row:
    ordered = sorted(measured.values(), key=lambda row: row.metrics.get(objective, 0.0))
    return ordered[(len(ordered) - 1) // 2]


def _incumbents(rows: list[Row]) -> set[str]:
    """Configs measured as last night's champion (tuner nightly): a tie is not a change."""
    return {config_key(row.knobs) for row in rows if row.role == st.CHAMPION}


def _tie_break(a: Row, b: Row, baseline_knobs: dict[str, Any] | None, incumbents: set[str],
               equivalent: bool, a_ahead: bool) -> tuple[Row, str]:
    """Of two tied configs: the incumbent (last night's champion); else, when the interval
    shows them equal within EQUIVALENT, the one with fewer changes from the baseline, then
    the one with more samples per dollar; else (not settled) the one the pairs put ahead."""
    held = [row for row in (a, b) if config_key(row.knobs) in incumbents]
    if len(held) == 1:
        return held[0], "incumbent (last night's champion: a tie is not a change)"
    if not equivalent:
        ahead = a if a_ahead else b
        return ahead, (f"one ahead by the pairs' ratio: not settled (the interval is wider "
                       f"than equal within {EQUIVALENT:.0%}; more rounds, "
                       "budget.confirm_rounds, would settle it)")

    def changes(row: Row) -> int:
        base = baseline_knobs or {}
        return sum(1 for knob, value in row.knobs.items() if base.get(knob, value) != value)

    if changes(a) != changes(b):
        named = a if changes(a) < changes(b) else b
        other = b if named is a else a
        return named, (f"simpler config ({changes(named)} change(s) from the baseline vs "
                       f"{changes(other)})")
    dollars = {row.number: row.metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0) for row in (a, b)}
    named = a if dollars[a.number] >= dollars[b.number] else b
    return named, "cheaper config (as many changes from the baseline, more samples per dollar)"
