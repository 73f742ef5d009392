"""Search efficiency: how close does a search get to the best config, in how many trials and
how much wall time; how sure can it be; and where a trial's wall time goes.

1. Grid: every config of a small space measured once, each in a fresh trial process exactly as
   the tuner runs it (tuner.node.supervisor.run_trial_process, the accuracy guard once per
   numerics key), measured by time; cached. Three workloads (--workload): the tiny CNN of
   issue 9, and two the tuner was never tuned on (benchmarks/efficiency_workloads.py): a
   Transformer text classifier and a GRU sequence regressor.
2. Reference: the grid's top configs measured again (--top, --repeats; cached), because one
   measurement on a shared machine is several % off the next; a config's reference value is
   the mean of all its measurements, and their spread is the run-to-run noise.
3. Replay (benchmarks/efficiency_replay.py): searches asked exactly as `tuner search` asks
   them, each trial told a fresh measurement, over many seeds; screening, the drift sentinel
   and the paired confirmation simulated (the verdict by tuner.driver.pairs itself). Judged by
   the reference value of the config the search would report best, after n trials and after
   t seconds of trial wall time; the paired verdicts: how often decided, how often right.
   --drift F: the machine also runs F x as fast for a few trials at a time. Plot with --plot.
4. Time per trial: timed steps vs process start, imports, model build, warm-up, guard.
5. --larger WORKDIR: instead, one real `tuner search` of a larger workload (ResNet-18, 64x64
   images, 64 configs) with the default search, and where its wall time went; --search
   WORKDIR: the same for --workload's space, with a budget of 20% of its grid.

    python benchmarks/search_efficiency.py [--workload tiny_cnn|text_classifier|
        sequence_regressor] [--grid-cache FILE] [--top 10 --repeats 2] [--seeds 20]
        [--budget N (default: 20% of the grid)] [--drift 0.5] [--plot FILE]
    python benchmarks/search_efficiency.py --larger tuner-runs/efficiency-larger
    python benchmarks/search_efficiency.py --workload text_classifier --search WORKDIR
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from efficiency_replay import METHODS, Outcome, Replay, configs_of

HERE = Path(__file__).resolve().parent

# the new workloads' measurement (3 s of timed steps), guard and sampler
TIMED_3S = """
measure: {warmup_steps: 3, timed_steps: 10000, min_timed_steps: 5, max_timed_s: 3, max_cv: 0.25,
          screen_s: 1, prune_below: 0.7}
trial: {time_limit_s: 120}
guard: {steps: 5, batch_size: 16, tolerance: 0.05}
sampler: {name: tpe, seed: 0, startup_trials: 5}
"""

SPACES = {
    "tiny_cnn": """
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
measure: {warmup_steps: 3, timed_steps: 10000, min_timed_steps: 5, max_timed_s: 4, max_cv: 0.25,
          screen_s: 1, prune_below: 0.7}
trial: {time_limit_s: 120}
guard: {steps: 5, batch_size: 16, tolerance: 0.02}
sampler: {name: tpe, seed: 0, startup_trials: 5}
""",
    # not vision: a Transformer encoder over token sequences (matmul-bound)
    "text_classifier": """
study: efficiency_text
workload: {name: "efficiency_workloads:text_classifier", options: {lr: 0.01}}
knobs:
  batch_size: [8, 16, 32, 64, 128]
  num_workers: [0, 1]
  dtype: [fp32, bf16]
  threads: [1, 2]
  allocator: [default, tcmalloc]
baseline: {batch_size: 32, num_workers: 0, dtype: fp32, threads: 2, allocator: default}
""" + TIMED_3S,
    # not vision: a GRU over a multivariate time series, MSE loss (recurrent, small matmuls)
    "sequence_regressor": """
study: efficiency_sequence
workload: {name: "efficiency_workloads:sequence_regressor", options: {lr: 0.01}}
knobs:
  batch_size: [16, 32, 64, 128, 256]
  num_workers: [0, 1]
  dtype: [fp32, bf16]
  threads: [1, 2]
  allocator: [default, jemalloc]
baseline: {batch_size: 64, num_workers: 0, dtype: fp32, threads: 2, allocator: default}
""" + TIMED_3S,
}


LARGER = """
study: efficiency_larger
workload: {name: torchvision, options: {model: resnet18, image_size: 64, num_classes: 10,
                                        lr: 0.01}}
knobs:
  batch_size: [16, 32, 64, 128]
  num_workers: [0, 1]
  dtype: [fp32, bf16]
  memory_format: [contiguous, channels_last]
  threads: [1, 2]
baseline: {batch_size: 32, num_workers: 0, dtype: fp32, memory_format: contiguous, threads: 2}
budget: {trials: 16, timeout_s: 3600}
measure: {warmup_steps: 2, timed_steps: 10000, min_timed_steps: 5, max_timed_s: 6, max_cv: 0.25,
          screen_s: 1.5, prune_below: 0.7}
trial: {time_limit_s: 300}
guard: {steps: 3, batch_size: 8, tolerance: 0.05}
"""


def single_pass(space_text: str, workdir: Path, trials: int | None = None) -> None:
    """One real `tuner search` of a space with the default search (the larger workload, or
    --search: a grid's workload with a budget of 20% of its grid), and where its wall time
    went; its output shows the paired confirmation and the sentinel as a user sees them."""
    from optuna import load_study

    from tuner.driver import ranking as rk
    from tuner.driver import report as rp
    from tuner.driver.cli import main as tuner_main
    from tuner.driver.space import parse_space

    workdir.mkdir(parents=True, exist_ok=True)
    study_name = parse_space(space_text, source="search_efficiency.py").study
    space_file = workdir / f"{study_name}.yaml"
    space_file.write_text(space_text, encoding="utf-8")
    extra = ["--trials", str(trials)] if trials else []
    started = time.monotonic()
    code = tuner_main(["search", "--space", str(space_file), "--workdir", str(workdir), *extra])
    search_s = time.monotonic() - started
    study = load_study(study_name=study_name, storage=f"sqlite:///{workdir}/optuna.db")
    rows = rk.rows(study)
    walls = [row.info.get("ended_at", 0) - row.info.get("started_at", 0) for row in rows
             if row.info.get("started_at")]
    timed = [row.metrics.get("timed_s", 0.0) for row in rows if row.info.get("started_at")]
    kept = [sum(row.step_times_s) for row in rows if row.info.get("started_at")]
    best = rk.ranked(rows, "samples_per_sec")[0]
    first_found = min(row.number for row in rows if row.knobs == best.knobs)
    print(f"\n{study_name} (exit {code}): {len(rows)} trials in {search_s:.0f} s of search "
          f"wall time, {sum(walls):.0f} s in trial processes (the rest: driver, Ray, MLflow, "
          f"Optuna: {(search_s - sum(walls)) / len(rows):.1f} s a trial)")
    print(f"  best: trial {best.number} ({best.role}), {best.samples_per_sec:.1f} samples/s, "
          f"{best.metrics.get('speedup', 0):.2f}x the baseline; its config first measured at "
          f"trial {first_found}; {rp.changes(best.knobs, rk.baseline_row(rows).knobs)}")
    print(f"  timed steps / trial wall time: {sum(timed) / sum(walls):.1%} (kept rounds only "
          f"{sum(kept) / sum(walls):.1%}); roles: "
          f"{dict(Counter(row.role or 'candidate' for row in rows))}; statuses: "
          f"{dict(Counter(row.status for row in rows))}")
    verdict = rk.paired_verdict(rows, "samples_per_sec")
    for line in ([verdict.describe()] if verdict else []) + rp.drift_lines(rows):
        print(f"  {line}")


def grid_configs(space: Any) -> list[dict[str, Any]]:
    import itertools

    names = list(space.knobs)
    choices = [space.knobs[name].choices for name in names]
    return [space.full_config(dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*choices)]


def measure_grid(space: Any, cache: Path) -> list[dict[str, Any]]:
    """Every config once, in a fresh trial process; cached (the slow part)."""
    from tuner.knobs import numerics_key
    from tuner.node.supervisor import run_trial_process
    from tuner.trial import TrialConfig

    done = json.loads(cache.read_text()) if cache.exists() else []
    measured = {json.dumps(entry["knobs"], sort_keys=True) for entry in done}
    guarded: set[str] = {numerics_key(entry["knobs"]) for entry in done}
    configs = grid_configs(space)
    for number, knobs in enumerate(configs):
        if json.dumps(knobs, sort_keys=True) in measured:
            continue
        key = numerics_key(knobs)
        config = TrialConfig(study=space.study, trial_number=number, workload=space.workload,
                             knobs=knobs, measure=space.measure,
                             guard=space.guard.settings(key not in guarded),
                             time_limit_s=space.trial.time_limit_s)
        guarded.add(key)
        result = run_trial_process(config.to_json(), config.time_limit_s)
        entry = {"knobs": knobs, "status": result["status"], "metrics": result["metrics"],
                 "step_times_s": result["step_times_s"], "wall_s": result["info"]["wall_s"]}
        done.append(entry)
        cache.write_text(json.dumps(done))
        searched = space.searched(knobs)
        print(f"  grid {len(done)}/{len(configs)}: {result['status']} "
              f"{result['metrics'].get('samples_per_sec', 0):.0f} samples/s, "
              f"{entry['wall_s']:.1f} s  {searched}", flush=True)
    return done


def run_to_run(space: Any, entries: list[dict[str, Any]], top: int, repeats: int,
               cache: Path) -> dict[str, list[float]]:
    """The grid's `top` configs measured `repeats` more times each, in fresh trial processes
    (cached): how far one measurement is from the next, and whether the grid's best holds."""
    from tuner.node.supervisor import run_trial_process
    from tuner.trial import TrialConfig

    again: dict[str, list[float]] = json.loads(cache.read_text()) if cache.exists() else {}
    ranked = sorted((e for e in entries if e["status"] == "ok" and not e["metrics"].get("noisy")),
                    key=lambda e: -e["metrics"]["samples_per_sec"])[:top]
    for entry in ranked:
        key = json.dumps(entry["knobs"], sort_keys=True)
        values = again.setdefault(key, [])
        while len(values) < repeats:
            config = TrialConfig(study=space.study, trial_number=0, workload=space.workload,
                                 knobs=entry["knobs"], measure=space.measure,
                                 guard=space.guard.settings(False),
                                 time_limit_s=space.trial.time_limit_s)
            result = run_trial_process(config.to_json(), config.time_limit_s)
            values.append(result["metrics"].get("samples_per_sec", 0.0))
            cache.write_text(json.dumps(again))
    first = {json.dumps(e["knobs"], sort_keys=True): e["metrics"]["samples_per_sec"]
             for e in entries}
    return {key: [first[key], *values] for key, values in again.items() if key in first}


def plot(curves: dict[str, list[list[tuple[float, float]]]], grid_best: float, grid_size: int,
         path: Path) -> None:
    """Best-found / grid-best against trials and against trial wall time: median over seeds,
    with the inter-quartile band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_trials, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, runs in curves.items():
        budget = min(len(curve) for curve in runs)
        trials = list(range(1, budget + 1))
        quartiles = [statistics.quantiles([curve[n][1] / grid_best for curve in runs], n=4,
                                          method="inclusive") for n in range(budget)]
        line, = by_trials.plot(trials, [q[1] for q in quartiles], label=name)
        by_trials.fill_between(trials, [q[0] for q in quartiles], [q[2] for q in quartiles],
                               color=line.get_color(), alpha=0.12)
        horizon = max(curve[-1][0] for curve in runs)
        grid_s = [horizon * i / 200 for i in range(201)]
        at_time = [[next((b for w, b in reversed(curve) if w <= t), 0.0) / grid_best
                     for curve in runs] for t in grid_s]
        by_time.plot(grid_s, [statistics.median(v) for v in at_time], color=line.get_color(),
                     label=name)
    for axis in (by_trials, by_time):
        axis.axhline(0.97, color="grey", linestyle="--", linewidth=1)
        axis.set_ylim(0.5, 1.02)
        axis.set_ylabel("best found / reference")
        axis.grid(alpha=0.3)
    by_trials.axvline(round(0.2 * grid_size), color="grey", linestyle=":", linewidth=1)
    by_trials.set_xlabel("trials (dotted: 20% of the grid)")
    by_time.set_xlabel("trial wall time, s")
    by_trials.legend(fontsize=8, loc="lower right")
    figure.suptitle(f"search efficiency on a {grid_size}-config grid (median over seeds; "
                    "band: inter-quartile)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"plot: {path}")


def time_breakdown(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Mean share of a trial's wall time in each phase."""
    shares: dict[str, list[float]] = {}
    for entry in entries:
        if entry["status"] != "ok":
            continue
        m, wall = entry["metrics"], entry["wall_s"]
        kept = sum(entry["step_times_s"])
        # every round's timed steps (older grids: estimated as rounds x the kept round)
        timed = m.get("timed_s", kept * m.get("measure_rounds", 1.0))
        in_process = m.get("trial_process_s", wall)
        known = timed + m.get("warmup_s", 0.0) + m.get("model_build_s", 0.0) + m.get("guard_s", 0.0)
        parts = {
            "timed steps, the kept round": kept,
            "timed steps, rounds timed again (too noisy)": timed - kept,
            "warm-up steps (compile included)": m.get("warmup_s", 0.0),
            "model build (the first optimizer imports torch._dynamo)": m.get("model_build_s", 0.0),
            "accuracy guard": m.get("guard_s", 0.0),
            "torch import, knob checks": max(0.0, in_process - known),
            "process start, exit, supervisor": max(0.0, wall - in_process),
        }
        for name, seconds in parts.items():
            shares.setdefault(name, []).append(seconds / wall)
    return {name: statistics.fmean(values) for name, values in shares.items()}


def host_info() -> dict[str, Any]:
    """What the baseline trial reports of this machine, for the priors (the replay's trials
    ran here)."""
    from tuner.knobs.base import CPU_FEATURES, _cpu_flags

    return {"device": "cpu", "cpu_features": sorted(set(CPU_FEATURES) & _cpu_flags())}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(SPACES), default="tiny_cnn")
    parser.add_argument("--grid-cache", type=Path,
                        help="default: tuner-runs/efficiency-grid-WORKLOAD.json")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, help="trials per replayed search (default: 20%% "
                        "of the grid)")
    parser.add_argument("--top", type=int, default=10,
                        help="grid configs re-measured to find the run-to-run noise")
    parser.add_argument("--repeats", type=int, default=2, help="re-measurements of each")
    parser.add_argument("--drift", type=float, default=1.0,
                        help="replay on a machine that runs this many times as fast for a few "
                        "trials at a time (1: no drift beyond the measured noise)")
    parser.add_argument("--plot", type=Path, help="write the curves as a PNG here")
    parser.add_argument("--larger", type=Path, metavar="WORKDIR",
                        help="instead: one real search of the larger workload, stores here")
    parser.add_argument("--search", type=Path, metavar="WORKDIR",
                        help="instead: one real search of --workload's space with a budget of "
                        "20%% of its grid, stores here")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    if args.larger:
        single_pass(LARGER, args.larger)
        return 0
    from tuner.driver.space import parse_space

    # the trial processes import the new workloads from this folder
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    sys.path.insert(0, str(HERE))
    space = parse_space(SPACES[args.workload], source=f"search_efficiency.py ({args.workload})")
    if args.search:
        single_pass(SPACES[args.workload], args.search,
                    args.budget or round(0.2 * len(grid_configs(space))))
        return 0
    cache = args.grid_cache or Path(f"tuner-runs/efficiency-grid-{args.workload}.json")
    cache.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    entries = measure_grid(space, cache)
    ok = [e for e in entries if e["status"] == "ok"]
    print(f"\n{args.workload} grid: {len(entries)} configs ({len(ok)} ok), measured in "
          f"{sum(e['wall_s'] for e in entries):.0f} s of trial wall time "
          f"(this run: {time.monotonic() - started:.0f} s)")
    for entry in entries:
        if entry["status"] != "ok":
            print(f"  not ok: {entry['status']} {space.searched(entry['knobs'])}")
    single = max((e for e in ok if not e["metrics"].get("noisy")),
                 key=lambda e: e["metrics"]["samples_per_sec"])
    print(f"grid's best single measurement: {single['metrics']['samples_per_sec']:.0f} samples/s, "
          f"{space.searched(single['knobs'])}")

    print(f"\nrun to run: the grid's top {args.top} configs measured {args.repeats} more times")
    again = run_to_run(space, entries, args.top, args.repeats, cache.with_suffix(".again.json"))
    for key, values in sorted(again.items(), key=lambda item: -statistics.fmean(item[1])):
        print(f"  {' '.join(f'{v:>7.0f}' for v in values)}  mean "
              f"{statistics.fmean(values):>7.0f}  cv "
              f"{statistics.stdev(values) / statistics.fmean(values):.3f}  "
              f"{space.searched(json.loads(key))}")
    run_to_run_cv = statistics.fmean(statistics.stdev(values) / statistics.fmean(values)
                                     for values in again.values())
    configs = configs_of(entries, again, space.measure.max_timed_s)
    ranked = sorted((c for c in configs.values() if c.ok and not c.noisy),
                    key=lambda c: -c.truth)
    grid_best = ranked[0].truth
    within = sum(c.truth >= 0.97 * grid_best for c in ranked)
    print(f"  run-to-run cv (mean over those configs): {run_to_run_cv:.3f}")
    print(f"reference (the best mean): {grid_best:.0f} samples/s, "
          f"{space.searched(ranked[0].knobs)}; {within} config(s) within 97% of it; the "
          f"baseline {configs[json.dumps(space.full_config({}), sort_keys=True)].truth:.0f}")
    budget = args.budget or max(1, round(0.2 * len(entries)))
    outcomes = replays(space, configs, budget, args, run_to_run_cv, grid_best)
    if args.plot:
        plot({name: [o.curve for o in runs] for name, runs in outcomes.items()}, grid_best,
             len(entries), args.plot)
    print("\nwhere a trial's wall time goes (mean share over the grid's trials):")
    for phase, share in time_breakdown(entries).items():
        print(f"  {phase:<56} {share:>6.1%}")
    return 0


def replays(space: Any, configs: dict[str, Any], budget: int, args: argparse.Namespace,
            run_to_run_cv: float, grid_best: float) -> dict[str, list[Outcome]]:
    """Every method over the seeds: the curve's checkpoints, wall time, and the verdicts."""
    checkpoints = sorted({n for n in (1, 5, 8, 10) if n < budget} | {budget})
    drift = f", the machine {args.drift:g}x for a few trials at a time" if args.drift != 1 else ""
    print(f"\nbest-found / reference (the reference value of the config the search would "
          f"report), median over {args.seeds} seeds (share of seeds at >= 97%), after n trials "
          f"of a {budget}-trial budget{drift}")
    print(f"{'method':<38} " + " ".join(f"{'n=' + str(n):>14}" for n in checkpoints)
          + f" {'wall s':>7}")
    outcomes: dict[str, list[Outcome]] = {}
    for name, method in METHODS.items():
        runs = outcomes[name] = [
            Replay(space, configs, method, seed, budget, run_to_run_cv, args.drift,
                   host_info()).run() for seed in range(args.seeds)]
        cells = []
        for n in checkpoints:
            ratios = [o.curve[n - 1][1] / grid_best for o in runs]
            reached = sum(r >= 0.97 for r in ratios) / len(ratios)
            cells.append(f"{statistics.median(ratios):>6.3f} ({reached:>4.0%})")
        wall = statistics.median(o.curve[budget - 1][0] for o in runs)
        print(f"{name:<38} " + " ".join(f"{cell:>14}" for cell in cells) + f" {wall:>7.0f}")
    print("\npaired verdicts at the budget's end (reported best vs the runner-up):")
    for name, runs in outcomes.items():
        verdicts(name, runs, configs)
    return outcomes


def verdicts(name: str, runs: list[Outcome], configs: dict[str, Any]) -> None:
    """How often the pairs decided, how often the config they named is truly the better
    of the two (reference values), and the median ratio and interval."""
    judged = [o for o in runs if o.verdict is not None]
    if not judged:
        return
    decided = [o for o in judged if o.verdict.decided]
    right = [o for o in judged
             if configs[o.reported].truth >= configs[o.runner_up].truth]
    wrong_decided = [o for o in decided if o not in right]
    sentinels = statistics.fmean(o.sentinels for o in runs)
    windows = statistics.fmean(o.drifted_windows for o in runs)
    print(f"  {name}: {len(decided)}/{len(judged)} decided ({len(wrong_decided)} of them "
          f"for the truly worse config); named the truly better of the two in "
          f"{len(right)}/{len(judged)}; median ratio "
          f"{statistics.median(o.verdict.ratio for o in judged):.3f}, interval "
          f"{statistics.median(o.verdict.low for o in judged):.3f}-"
          f"{statistics.median(o.verdict.high for o in judged):.3f} (medians); sentinels "
          f"{sentinels:.1f} a search, {windows:.1f} drifted windows")


if __name__ == "__main__":
    sys.exit(main())
