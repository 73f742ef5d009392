"""Search efficiency: how close does a search get to the grid's best, in how many trials and
how much wall time; and where a trial's wall time goes.

1. Grid: every config of a small space is measured once, each in a fresh trial process exactly
   as the tuner runs it (tuner.executor.run_trial_process, the accuracy guard once per
   numerics key as a search does), results cached in a JSON file.
2. Replay: searches with the tuner's own sampler (study.make_sampler: TPE, multivariate, its
   start-up trials, the baseline enqueued first) and with random search are replayed over many
   seeds against the grid's measurements: best-found / grid-best after n trials and after t
   seconds of (measured) trial wall time. A replay reuses each config's one measurement, so
   the comparison between samplers is not blurred by re-measuring noise; the grid itself was
   measured once, with this machine's noise.
3. Time per trial: timed steps vs process start + imports, model build, warm-up (incl.
   compile) and the guard, from the grid's trial records.

    python benchmarks/search_efficiency.py [--grid-cache FILE] [--seeds 20] [--budget 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

SPACE = """
study: efficiency
workload: {name: tiny_cnn, options: {image_size: 16, num_classes: 10, lr: 0.05}}
knobs:
  batch_size: [16, 32, 64, 128, 256]
  num_workers: [0, 1]
  dtype: [fp32, bf16]
  memory_format: [contiguous, channels_last]
  threads: [1, 2]
baseline: {batch_size: 256, num_workers: 0, dtype: fp32, memory_format: contiguous,
           threads: 2}
measure: {warmup_steps: 3, timed_steps: 10000, min_timed_steps: 5, max_timed_s: 4, max_cv: 0.25}
trial: {time_limit_s: 120}
guard: {steps: 5, batch_size: 16, tolerance: 0.02}
sampler: {name: tpe, seed: 0, startup_trials: 5}
"""


def grid_configs(space: Any) -> list[dict[str, Any]]:
    import itertools

    names = list(space.knobs)
    choices = [space.knobs[name].choices for name in names]
    return [space.full_config(dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*choices)]


def measure_grid(space: Any, cache: Path) -> list[dict[str, Any]]:
    """Every config once, in a fresh trial process; cached (the slow part)."""
    from tuner.executor import run_trial_process
    from tuner.knobs import numerics_key
    from tuner.trial import TrialConfig

    done = json.loads(cache.read_text()) if cache.exists() else []
    measured = {json.dumps(entry["knobs"], sort_keys=True) for entry in done}
    guarded: set[str] = {numerics_key(entry["knobs"]) for entry in done}
    configs = grid_configs(space)
    for number, knobs in enumerate(configs):
        if json.dumps(knobs, sort_keys=True) in measured:
            continue
        key = numerics_key(knobs)
        config = TrialConfig(study="efficiency", trial_number=number, workload=space.workload,
                             knobs=knobs, measure=space.measure,
                             guard=space.guard.settings(key not in guarded),
                             time_limit_s=space.trial.time_limit_s)
        guarded.add(key)
        result = run_trial_process(config.to_json(), config.time_limit_s)
        entry = {"knobs": knobs, "status": result["status"], "metrics": result["metrics"],
                 "step_times_s": result["step_times_s"], "wall_s": result["info"]["wall_s"]}
        done.append(entry)
        cache.write_text(json.dumps(done))
        searched = {name: knobs[name] for name in space.knobs if name in knobs}
        print(f"  grid {len(done)}/{len(configs)}: {result['status']} "
              f"{result['metrics'].get('samples_per_sec', 0):.0f} samples/s, "
              f"{entry['wall_s']:.1f} s  {searched}", flush=True)
    return done


def replay(space: Any, grid: dict[str, dict[str, Any]], sampler_name: str, seed: int,
           budget: int) -> list[tuple[float, float]]:
    """(cumulative trial wall s, best samples/s so far) after each of `budget` trials."""
    import dataclasses

    import optuna

    from tuner import study as st
    from tuner.space import Sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampled_space = dataclasses.replace(space, sampler=Sampler(
        name=sampler_name, seed=seed, startup_trials=space.sampler.startup_trials))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="maximize",
                                    sampler=st.make_sampler(sampled_space))
        st.enqueue_baseline(study, sampled_space)
        curve, best, wall = [], 0.0, 0.0
        for _ in range(budget):
            trial = study.ask()
            knobs = st.suggest(trial, sampled_space)
            entry = grid[json.dumps(knobs, sort_keys=True)]
            value = entry["metrics"].get("samples_per_sec", 0.0) if entry["status"] == "ok" else 0.0
            study.tell(trial, value)
            best = max(best, value)
            wall += entry["wall_s"]
            curve.append((wall, best))
    return curve


def time_breakdown(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Mean share of a trial's wall time in each phase."""
    shares: dict[str, list[float]] = {}
    for entry in entries:
        if entry["status"] != "ok":
            continue
        m, wall = entry["metrics"], entry["wall_s"]
        timed = sum(entry["step_times_s"])
        in_process = m.get("trial_process_s", wall)
        known = timed + m.get("warmup_s", 0.0) + m.get("model_build_s", 0.0) + m.get("guard_s", 0.0)
        parts = {
            "timed steps (the kept round)": timed,
            "warm-up steps (compile included)": m.get("warmup_s", 0.0),
            "model build": m.get("model_build_s", 0.0),
            "accuracy guard": m.get("guard_s", 0.0),
            "torch import, knob checks, re-measured rounds": max(0.0, in_process - known),
            "process start (python, tuner import), supervisor": max(0.0, wall - in_process),
        }
        for name, seconds in parts.items():
            shares.setdefault(name, []).append(seconds / wall)
    return {name: statistics.fmean(values) for name, values in shares.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-cache", type=Path, default=Path("tuner-runs/efficiency-grid.json"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=20, help="trials per replayed search")
    args = parser.parse_args()

    from tuner.space import parse_space

    space = parse_space(SPACE, source="search_efficiency.py")
    args.grid_cache.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    entries = measure_grid(space, args.grid_cache)
    grid = {json.dumps(e["knobs"], sort_keys=True): e for e in entries}
    ok = [e for e in entries if e["status"] == "ok"]
    best = max(ok, key=lambda e: e["metrics"]["samples_per_sec"])
    grid_best = best["metrics"]["samples_per_sec"]
    print(f"\ngrid: {len(entries)} configs ({len(ok)} ok), measured in "
          f"{sum(e['wall_s'] for e in entries):.0f} s of trial wall time "
          f"(this run: {time.monotonic() - started:.0f} s)")
    print(f"grid best: {grid_best:.0f} samples/s, {best['knobs']}")

    checkpoints = [n for n in (1, 5, 8, 10, 16, 20) if n <= args.budget]
    twenty_percent = max(1, round(0.2 * len(entries)))
    print(f"\nbest-found / grid-best, median over {args.seeds} seeds (and share of seeds at "
          f">= 97%), after n trials; 20% of the grid = {twenty_percent} trials")
    print(f"{'sampler':<8} " + " ".join(f"{'n=' + str(n):>14}" for n in checkpoints))
    curves = {}
    for name in ("random", "tpe"):
        curves[name] = [replay(space, grid, name, seed, args.budget) for seed in range(args.seeds)]
        cells = []
        for n in checkpoints:
            ratios = [curve[n - 1][1] / grid_best for curve in curves[name]]
            reached = sum(r >= 0.97 for r in ratios) / len(ratios)
            cells.append(f"{statistics.median(ratios):>6.3f} ({reached:>4.0%})")
        print(f"{name:<8} " + " ".join(f"{cell:>14}" for cell in cells))
    for name, runs in curves.items():
        at = [curve[min(twenty_percent, len(curve)) - 1] for curve in runs]
        print(f"{name}: at {twenty_percent} trials, median trial wall time used "
              f"{statistics.median(w for w, _ in at):.0f} s, best/grid-best median "
              f"{statistics.median(b / grid_best for _, b in at):.3f}")

    print("\nwhere a trial's wall time goes (mean share over the grid's trials):")
    for phase, share in time_breakdown(entries).items():
        print(f"  {phase:<40} {share:>6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
