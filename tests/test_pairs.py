"""Paired, interleaved confirmation (issue 23): the two best configs' ratio with its 95%
interval decides; a tie within 3% names the simpler config, a wider one the config ahead."""

from __future__ import annotations

import math

import pytest

from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.pairs import paired, t_975

BASE = {"batch_size": 32, "dtype": "fp32", "memory_format": "contiguous"}
ONE_CHANGE = {**BASE, "dtype": "bf16"}
TWO_CHANGES = {**BASE, "dtype": "bf16", "memory_format": "channels_last"}


def _row(number: int, knobs: dict, speed: float, role: str = "candidate",
         pair: str | None = None, confirms: int | None = None) -> rk.Row:
    return rk.Row(number=number, role=role, status="ok", reason="", knobs=knobs,
                  metrics={"samples_per_sec": speed, "samples_per_dollar": speed * 1e4,
                           "speedup": speed / 10.0}, violation=0.0, pair=pair,
                  confirms=confirms)


def _study_rows(a_speeds: list[float], b_speeds: list[float]) -> list[rk.Row]:
    """Baseline, two candidates, then rounds A B / B A of confirming trials."""
    rows = [_row(0, BASE, 10.0, role=st.BASELINE), _row(1, TWO_CHANGES, 14.0),
            _row(2, ONE_CHANGE, 13.5)]
    number = 3
    for round_, (a, b) in enumerate(zip(a_speeds, b_speeds, strict=True)):
        order = [(TWO_CHANGES, a, 1), (ONE_CHANGE, b, 2)]
        for knobs, speed, confirms in order if round_ % 2 == 0 else order[::-1]:
            rows.append(_row(number, knobs, speed, st.CONFIRM, f"14:{round_}", confirms))
            number += 1
    return rows


def test_a_consistent_difference_is_decided_with_its_interval() -> None:
    rows = _study_rows([12.0, 12.4, 11.8], [10.0, 10.1, 9.9])
    verdict = rk.paired_verdict(rows, "samples_per_sec")
    assert verdict is not None and verdict.decided and verdict.pairs == 3
    assert verdict.named.knobs == TWO_CHANGES and verdict.named.samples_per_sec == 12.0
    ratios = [12.0 / 10.0, 12.4 / 10.1, 11.8 / 9.9]
    assert verdict.ratio == pytest.approx(math.exp(sum(map(math.log, ratios)) / 3))
    assert 1 < verdict.low < verdict.ratio < verdict.high
    assert "better, the interval excludes 1" in verdict.describe()
    ranked = rk.ranked(rows, "samples_per_sec")
    assert ranked[0].knobs == TWO_CHANGES and ranked[0].role == st.CONFIRM
    assert [r.knobs for r in ranked if r.role == st.CONFIRM] == [TWO_CHANGES, ONE_CHANGE]
    assert "paired confirmation: trial" in rp.format_table(rows, "samples_per_sec")
    assert "paired_ratio_low" in verdict.metrics()


def test_drift_between_rounds_falls_on_both_alike() -> None:
    """The machine slows 3x between rounds: single measurements would rank the rounds, the
    pairs still see A 1.2x B."""
    rows = _study_rows([12.0, 4.0, 36.0], [10.0, 3.33, 30.0])
    verdict = rk.paired_verdict(rows, "samples_per_sec")
    assert verdict is not None and verdict.decided and verdict.named.knobs == TWO_CHANGES
    assert verdict.ratio == pytest.approx(1.2, abs=0.01)


def test_a_tie_within_three_percent_names_the_simpler_config() -> None:
    a, b = [11.0, 11.1, 10.95], [11.02, 11.0, 11.01]
    rows = _study_rows(a, b)
    verdict = rk.paired_verdict(rows, "samples_per_sec")
    assert verdict is not None and not verdict.decided
    assert 1 / 1.03 <= verdict.low < 1 < verdict.high <= 1.03
    assert verdict.named.knobs == ONE_CHANGE  # equal within 3%: one change beats two
    assert "tied, the interval includes 1; named the simpler config (1 change(s)" in \
        verdict.describe()
    assert verdict.ratio == pytest.approx(1 / math.exp(sum(math.log(x / y) for x, y in zip(
        a, b, strict=True)) / 3))
    assert rk.ranked(rows, "samples_per_sec")[0].knobs == ONE_CHANGE
    assert verdict.metrics()["paired_decided"] == 0.0


def test_an_unsettled_tie_names_the_one_the_pairs_put_ahead() -> None:
    """An interval too wide to call the two equal: naming the simpler there named the truly
    better of two in 29 of 60 replayed searches on a Transformer grid (docs/benchmarks.md)."""
    rows = _study_rows([12.0, 10.5, 11.4], [11.0, 11.2, 10.9])
    verdict = rk.paired_verdict(rows, "samples_per_sec")
    assert verdict is not None and not verdict.decided
    assert verdict.low < 1 / 1.03 and verdict.high > 1.03
    assert verdict.named.knobs == TWO_CHANGES and verdict.ratio > 1
    assert "tied, the interval includes 1; named the one ahead by the pairs' ratio: not " \
        "settled" in verdict.describe()
    assert rk.ranked(rows, "samples_per_sec")[0].knobs == TWO_CHANGES


def test_one_round_gives_no_interval_and_no_decision() -> None:
    rows = _study_rows([14.0], [10.0])
    verdict = paired(rows, "samples_per_sec", BASE)
    assert verdict is not None and not verdict.decided and verdict.pairs == 1
    assert "one round: no interval" in verdict.describe()


def test_no_pairs_no_verdict_and_the_old_ranking() -> None:
    rows = [_row(0, BASE, 10.0, role=st.BASELINE), _row(1, TWO_CHANGES, 14.0),
            _row(2, TWO_CHANGES, 13.0, role=st.CONFIRM, confirms=1)]
    assert rk.paired_verdict(rows, "samples_per_sec") is None
    assert rk.ranked(rows, "samples_per_sec")[0].number == 2  # confirmed, though slower


def test_student_t() -> None:
    assert t_975(1) == 12.706 and t_975(2) == 4.303 and t_975(11) == 2.228
    assert t_975(1000) == 2.0 and t_975(0) == math.inf
