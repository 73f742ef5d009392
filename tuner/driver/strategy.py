"""How a study starts after its baseline: a sweep of one knob at a time, as the published study
was done by hand, but automatic.

Knob by knob, in the space's order, every other value of that knob is tried on the best config
so far (the incumbent); the best of them becomes the incumbent for the next knob. Effects that
hold on their own (a larger batch, bf16 on a CPU with AVX512-BF16) are found in a handful of
trials, and interactions with knobs already settled are seen (channels_last tried at the batch
size that won). After the last knob the sampler (TPE) takes over, with every sweep trial as
its history.

Pure functions of what the study holds, so a resumed search picks the sweep up where it was
and a parallel search asks for a whole knob's values at once. Driver side: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tuner.driver.space import KnobSpace, Space, powers_of_two

SWEEP = "sweep"  # the trial role of a sweep config
MAX_RANGE_VALUES = 6  # an integer range is swept at this many values at most
# Passes over the knobs: another pass follows one that moved the incumbent (a knob swept early
# is swept again on what later knobs chose: channels_last may pay only at a larger batch),
# until a pass changes nothing.
MAX_PASSES = 3


@dataclass(frozen=True)
class Measured:
    """A finished trial as the sweep sees it: its config and objective (None: it failed, ran
    out of memory, was unsupported, or broke the accuracy guard)."""

    knobs: dict[str, Any]
    value: float | None
    role: str = "candidate"


def sweep_values(knob: KnobSpace) -> list[Any]:
    """The values a sweep tries: every choice; for an integer range its ends and, on a log
    range, the powers of two between (batch sizes), else evenly spaced values."""
    if knob.choices is not None:
        return list(knob.choices)
    r = knob.int_range
    assert r is not None
    if r.log:
        values = list(powers_of_two(r.low, r.high))
    else:
        count = min(MAX_RANGE_VALUES, r.size())
        values = [r.low + round(i * (r.high - r.low) / max(1, count - 1) / r.step) * r.step
                  for i in range(count)]
    unique = sorted(set(values))
    if len(unique) > MAX_RANGE_VALUES:  # keep the ends, thin the middle evenly
        step = (len(unique) - 1) / (MAX_RANGE_VALUES - 1)
        unique = sorted({unique[round(i * step)] for i in range(MAX_RANGE_VALUES)})
    return unique


def config_key(knobs: dict[str, Any]) -> str:
    """A config as a hashable key, the same for equal configs whatever their key order."""
    return json.dumps(knobs, sort_keys=True, default=str)


def next_sweep_configs(space: Space, measured: Iterable[Measured],
                       pending: Iterable[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The sweep's next configs (full, active knobs only): all untried values of the first
    knob not yet settled. [] while a knob's values are still running (wait for them);
    None once every knob is settled (the sampler's turn)."""
    results: dict[str, float | None] = {}
    start: list[Measured] = []
    for trial in measured:
        key = config_key(trial.knobs)
        if results.get(key) is None:  # a config measured twice: its feasible result counts
            results[key] = trial.value
        if trial.role not in (SWEEP, "candidate"):
            start.append(trial)  # baseline, priors, try_first, last night's champion
    waiting = {config_key(config) for config in pending}
    incumbent = _best(start, space.full_config({}), results)
    for _ in range(MAX_PASSES):
        moved = False
        for name, knob in space.knobs.items():
            if name not in incumbent:
                continue  # not active for the incumbent (compile_mode without compile)
            neighbours = [space.full_config({**incumbent, name: value})
                          for value in sweep_values(knob) if value != incumbent.get(name)]
            here = config_key(incumbent)
            neighbours = [config for config in neighbours if config_key(config) != here]
            untried = [config for config in neighbours
                       if config_key(config) not in results and config_key(config) not in waiting]
            if untried:
                return untried
            if any(config_key(config) in waiting for config in neighbours):
                return []
            best = _best([Measured(config, results.get(config_key(config)))
                          for config in neighbours], incumbent, results)
            moved = moved or config_key(best) != here
            incumbent = best
        if not moved:
            return None  # a whole pass changed nothing: settled
    return None


def _best(candidates: Iterable[Measured], incumbent: dict[str, Any],
          results: dict[str, float | None]) -> dict[str, Any]:
    """The best feasible config among the incumbent and the candidates; the incumbent keeps
    its place on a tie."""
    best, best_value = incumbent, results.get(config_key(incumbent))
    for candidate in candidates:
        value = results.get(config_key(candidate.knobs), candidate.value)
        if value is not None and (best_value is None or value > best_value):
            best, best_value = candidate.knobs, value
    return best


def sweep_length(space: Space) -> int:
    """Trials a sweep takes at most (each knob's other values), for planning a budget."""
    return sum(max(0, len(sweep_values(knob)) - 1) for knob in space.knobs.values())

