"""What each knob did, from what was measured: pairs of trials whose configs differ in one knob
only (the sweep makes them: the incumbent with one knob changed), each a ratio of the
objective with the two trials' step-time spread beside it.

This replaces a fitted importance for the review: on a sweep's non-random sample, Optuna's
importance gave num_workers 0.61 and dtype ~0.00 although bf16 + channels_last made a 3.1x,
and knobs never tried got 0.05 each. A model-based importance is shown only when the sampler's
own trials support one (`importance_supported`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuner import metrics as mx
from tuner.driver import study as st
from tuner.driver.ranking import Row, ranked
from tuner.driver.strategy import config_key

SAMPLER_TRIALS_FOR_IMPORTANCE = 10  # proposals of the sampler itself, measured, at least


@dataclass(frozen=True)
class Effect:
    """`knob` at `value` instead of the best config's `best_value`, all else equal: the
    objective is `ratio` times the best value's (above 1: better, whatever the direction)."""

    knob: str
    value: Any
    best_value: Any
    ratio: float
    spread: float  # the two trials' step-time cv combined: how far apart they are in noise
    trial: int  # the trial with `value`
    against: int  # the trial with `best_value`
    distance: int  # knobs in which the pair's shared config differs from the best config

    @property
    def label(self) -> str:
        return f"{self.knob}={self.value}"

    @property
    def within_noise(self) -> bool:
        return abs(self.ratio - 1.0) <= self.spread


def _measured(all_rows: list[Row]) -> list[Row]:
    return [row for row in all_rows
            if row.feasible and not row.noisy and row.duplicate_of is None]


def knob_effects(all_rows: list[Row], objective: str) -> list[Effect]:
    """For each knob and each of its other values measured one knob away from a trial that
    has the best config's value: the pair closest to the best config. Best config: the top
    of the ranking."""
    best_rows = ranked(all_rows, objective)
    if not best_rows:
        return []
    best = best_rows[0].knobs
    rows = _measured(all_rows)
    by_config: dict[str, Row] = {}
    for row in rows:  # a config measured twice (a confirmation): its first measurement
        by_config.setdefault(config_key(row.knobs), row)
    found: dict[tuple[str, str], Effect] = {}
    for row in by_config.values():
        for knob, best_value in best.items():
            if row.knobs.get(knob) != best_value:
                continue
            for other in by_config.values():
                effect = _pair_effect(row, other, knob, best, objective)
                if effect is None:
                    continue
                key = (knob, repr(effect.value))
                if key not in found or effect.distance < found[key].distance:
                    found[key] = effect
    return sorted(found.values(), key=lambda e: (list(best).index(e.knob), -e.ratio))


def _pair_effect(row: Row, other: Row, knob: str, best: dict[str, Any],
                 objective: str) -> Effect | None:
    """`other` as `row` with `knob` changed (and knobs only that value activates), or None."""
    if other.knobs.get(knob) == row.knobs.get(knob) or knob not in other.knobs:
        return None
    shared = set(row.knobs) & set(other.knobs)
    if any(row.knobs[name] != other.knobs[name] for name in shared if name != knob):
        return None
    mine, theirs = row.metrics.get(objective), other.metrics.get(objective)
    if not mine or not theirs:
        return None
    ratio = theirs / mine if mx.direction(objective) == mx.MAXIMIZE else mine / theirs
    spread = math.hypot(row.metrics.get(mx.STEP_TIME_CV, 0.0),
                        other.metrics.get(mx.STEP_TIME_CV, 0.0))
    distance = sum(1 for name, value in best.items()
                   if name != knob and row.knobs.get(name) != value)
    return Effect(knob, other.knobs[knob], row.knobs[knob], ratio, spread, other.number,
                  row.number, distance)


def never_apart(all_rows: list[Row], objective: str, knob_names: list[str]) -> list[str]:
    """The space's knobs no pair measured on its own: nothing is known of their effect."""
    seen = {effect.knob for effect in knob_effects(all_rows, objective)}
    return [name for name in knob_names if name not in seen]


def effects_markdown(all_rows: list[Row], objective: str, knob_names: list[str]) -> str:
    """The effects as a table for the MLflow review and report.html."""
    effects = knob_effects(all_rows, objective)
    lines = [f"# What each knob did (measured, one knob changed from a config with the best's "
             f"value; {objective} relative to the best's choice)", ""]
    if not effects:
        return "\n".join(lines + ["No two measured trials differ in one knob only yet.", ""])
    lines += ["| knob | value | best's value | ratio | spread | trials | verdict |",
              "|---|---|---|---:|---:|---|---|"]
    for effect in effects:
        verdict = ("within noise" if effect.within_noise else
                   "better" if effect.ratio > 1 else "worse")
        lines.append(f"| {effect.knob} | {effect.value} | {effect.best_value} | "
                     f"{effect.ratio:.2f}x | {effect.spread:.0%} | {effect.trial} vs "
                     f"{effect.against} | {verdict} |")
    untested = never_apart(all_rows, objective, knob_names)
    if untested:
        lines += ["", f"Never measured one knob apart (effect unknown): {', '.join(untested)}"]
    return "\n".join(lines) + "\n"


def importance_supported(trials: list[Any], knob_names: list[str]) -> bool:
    """A fitted importance means something only on the sampler's own proposals, enough of
    them, with every knob varied among them."""
    own = [t for t in trials if t.user_attrs.get(st.ROLE, "candidate") == "candidate"
           and t.user_attrs.get(st.STATUS) == "ok" and st.DUPLICATE_OF not in t.user_attrs]
    if len(own) < SAMPLER_TRIALS_FOR_IMPORTANCE:
        return False
    return all(len({repr(t.params.get(name)) for t in own}) > 1 for name in knob_names)
