"""The sweep that starts a study: one knob at a time from the best config so far."""

from __future__ import annotations

import json
from typing import Any

import optuna

from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.space import parse_space
from tuner.driver.strategy import SWEEP, Measured, next_sweep_configs, sweep_length, sweep_values

SPACE = """
workload: tiny_cnn
knobs:
  batch_size: {low: 16, high: 256, log: true}
  dtype: [fp32, bf16]
  compile: [none, inductor]
  compile_mode: [default, max-autotune]
  memory_format: [contiguous, channels_last]
baseline: {batch_size: 64, dtype: fp32, compile: none, memory_format: contiguous}
"""


def speed(knobs: dict[str, Any]) -> float:
    """A made-up machine: bigger batches help up to 128, bf16 helps, channels_last helps only
    with bf16, max-autotune is the best compile mode."""
    value = {16: 1.0, 32: 2.0, 64: 3.0, 128: 4.0, 256: 3.5}.get(knobs["batch_size"], 2.5)
    value *= 1.5 if knobs["dtype"] == "bf16" else 1.0
    value *= 1.2 if knobs["memory_format"] == "channels_last" and knobs["dtype"] == "bf16" else 1
    if knobs["compile"] == "inductor":
        value *= 1.3 if knobs.get("compile_mode") == "max-autotune" else 1.1
    return value


def run_sweep(space: Any) -> list[list[dict[str, Any]]]:
    measured = [Measured(space.full_config({}), speed(space.full_config({})), "baseline")]
    rounds = []
    while (configs := next_sweep_configs(space, measured, [])) is not None:
        assert configs, "nothing pending, so the sweep always has configs or is done"
        rounds.append(configs)
        measured += [Measured(config, speed(config), SWEEP) for config in configs]
    return rounds


def test_sweep_values_of_ranges_and_choices() -> None:
    space = parse_space(SPACE)
    assert sweep_values(space.knobs["batch_size"]) == [16, 32, 64, 128, 256]
    assert sweep_values(space.knobs["dtype"]) == ["fp32", "bf16"]
    linear = parse_space(SPACE.replace("{low: 16, high: 256, log: true}",
                                       "{low: 1, high: 100}")).knobs["batch_size"]
    values = sweep_values(linear)
    assert values[0] == 1 and values[-1] == 100 and len(values) == 6
    workers = parse_space(SPACE.replace(
        "knobs:\n", "knobs:\n  num_workers: {low: 0, high: 64}\n")).knobs["num_workers"]
    assert len(sweep_values(workers)) == 6 and sweep_values(workers)[::5] == [0, 64]


def _searched(space: Any, config: dict[str, Any]) -> dict[str, Any]:
    return {name: config[name] for name in space.knobs if name in config}


def test_sweep_settles_knob_by_knob_from_the_incumbent() -> None:
    space = parse_space(SPACE)
    rounds = [[_searched(space, config) for config in configs] for configs in run_sweep(space)]
    # pass 1, in the knob registry's order. batch: the 4 other sizes from the baseline; then
    # bf16 at the winning batch 128; then channels_last on top of bf16; then inductor; then
    # its mode (active now)
    assert sorted(config["batch_size"] for config in rounds[0]) == [16, 32, 128, 256]
    assert rounds[1] == [{"batch_size": 128, "dtype": "bf16", "memory_format": "contiguous",
                          "compile": "none"}]
    assert rounds[2] == [{**rounds[1][0], "memory_format": "channels_last"}]
    assert rounds[3] == [{**rounds[2][0], "compile": "inductor", "compile_mode": "default"}]
    assert rounds[4] == [{**rounds[3][0], "compile_mode": "max-autotune"}]
    # pass 2 (pass 1 moved): every knob again around the new incumbent; nothing moves: settled
    best = rounds[4][0]
    assert sorted(config["batch_size"] for config in rounds[5]) == [16, 32, 64, 256]
    assert all(config["dtype"] == "bf16" for config in rounds[5])
    tried = [config for configs in rounds for config in configs]
    assert len(tried) == len({repr(sorted(c.items())) for c in tried})  # nothing twice
    assert max(tried, key=lambda c: speed({**c, "compile_mode": c.get("compile_mode")})) == best
    assert len(tried) <= 2 * sweep_length(space)


def test_a_second_pass_finds_what_an_interaction_hid() -> None:
    """channels_last pays most at batch 256 here: pass 1 settles batch 32 before trying it
    (and takes it there, a little better), pass 2 sweeps batch again with channels_last on
    and finds 256."""
    space = parse_space("""
workload: tiny_cnn
knobs:
  batch_size: [32, 256]
  memory_format: [contiguous, channels_last]
baseline: {batch_size: 256, memory_format: contiguous}
""")
    table = {(32, "contiguous"): 2.0, (256, "contiguous"): 1.0, (32, "channels_last"): 2.1,
             (256, "channels_last"): 3.0}

    def value(config: dict[str, Any]) -> float:
        return table[(config["batch_size"], config["memory_format"])]

    measured = [Measured(space.full_config({}), 1.0, "baseline")]
    while configs := next_sweep_configs(space, measured, []):
        measured += [Measured(config, value(config), SWEEP) for config in configs]
    assert max(measured, key=lambda m: m.value or 0).value == 3.0
    assert len(measured) == 4


def test_sweep_waits_for_running_values_and_skips_failures() -> None:
    space = parse_space(SPACE)
    baseline = space.full_config({})
    first = next_sweep_configs(space, [Measured(baseline, 3.0, "baseline")], [])
    assert first is not None and len(first) == 4
    # two still running: nothing new to queue, wait
    done = [Measured(config, speed(config), SWEEP) for config in first[:2]]
    assert next_sweep_configs(space, [Measured(baseline, 3.0, "baseline"), *done],
                              first[2:]) == []
    # the best batch failed (None): the incumbent is the best that ran
    failed = [Measured(config, None if config["batch_size"] == 128 else speed(config), SWEEP)
              for config in first]
    second = next_sweep_configs(space, [Measured(baseline, 3.0, "baseline"), *failed], [])
    assert second is not None and second[0]["batch_size"] == 256 and len(second) == 1


def test_sweep_starts_from_the_best_prior_config() -> None:
    """A try_first or warm-start config that beats the baseline is where the sweep starts."""
    space = parse_space(SPACE)
    prior = space.full_config({"dtype": "bf16", "memory_format": "channels_last"})
    measured = [Measured(space.full_config({}), 3.0, "baseline"),
                Measured(prior, speed(prior), "try_first")]
    first = next_sweep_configs(space, measured, [])
    assert first is not None
    assert all(config["dtype"] == "bf16" and config["memory_format"] == "channels_last"
               for config in first)


def test_study_queues_the_sweep_then_hands_over_to_the_sampler() -> None:
    space = parse_space(SPACE.replace("  compile: [none, inductor]\n  compile_mode: [default,"
                                      " max-autotune]\n", ""))
    study = st.open_study(space, optuna.storages.InMemoryStorage(), "sweep")
    st.enqueue_baseline(study, space)
    roles, seen = [], set()
    for _ in range(14):
        st.enqueue_sweep(study, space)
        trial = study.ask()
        knobs = st.suggest(trial, space)
        roles.append(trial.user_attrs.get(st.ROLE, "candidate"))
        seen.add(json.dumps(knobs, sort_keys=True))
        study.tell(trial, speed({**knobs, "compile": "none"}))
    # pass 1: 4 batch sizes, bf16, channels_last; pass 2 on batch 128 + bf16 + channels_last:
    # the 4 other batch sizes, fp32; nothing moves: settled, the sampler's turn
    assert roles == [st.BASELINE] + [SWEEP] * 11 + ["candidate"] * 2
    assert len(seen) >= 12  # the sweep re-measures nothing
    assert max(trial.value for trial in study.trials) == speed(
        {"batch_size": 128, "dtype": "bf16", "memory_format": "channels_last", "compile": "none"})
    random_start = parse_space(SPACE + "sampler: {start: sampler}")
    assert st.enqueue_sweep(study, random_start) == 0


def _row(number: int, batch: int, sps: float, role: str = "candidate") -> rk.Row:
    return rk.Row(number=number, role=role, status="ok", reason="",
                  knobs={"batch_size": batch}, metrics={"samples_per_sec": sps}, violation=0.0)


def test_confirmed_measurements_rank_first_and_replace_the_first_ones() -> None:
    rows = [_row(0, 16, 100.0, st.BASELINE), _row(1, 64, 180.0), _row(2, 256, 200.0),
            _row(3, 128, 150.0)]
    assert [row.number for row in rk.ranked(rows, "samples_per_sec")] == [2, 1, 3, 0]
    # trial 2's 200 was a lucky draw: confirmed at 160; trial 1 confirmed at 175
    rows += [_row(4, 256, 160.0, st.CONFIRM), _row(5, 64, 175.0, st.CONFIRM)]
    assert [row.number for row in rk.ranked(rows, "samples_per_sec")] == [5, 4, 3, 0]
    assert [row.number for row in rk.unconfirmed(rows, "samples_per_sec")] == [3, 0]
    # an unconfirmed 190 after the confirmations: the confirmed best still comes first
    rows.append(_row(6, 32, 190.0))
    assert [row.number for row in rk.ranked(rows, "samples_per_sec")] == [5, 6, 4, 3, 0]
    best = rp.best_config(rows, "samples_per_sec", "s")
    assert best is not None and best["trial"] == 5 and best["knobs"] == {"batch_size": 64}


def test_constant_liar_only_when_trials_run_side_by_side() -> None:
    """A running trial counts as a poor result while trials run at once, so TPE does not
    propose its neighbour for the next free slot."""
    one = parse_space(SPACE)
    two = parse_space(SPACE + "trial: {max_concurrent: 2}")
    assert getattr(st.make_sampler(one), "_constant_liar", None) is False
    assert getattr(st.make_sampler(two), "_constant_liar", None) is True
