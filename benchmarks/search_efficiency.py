"""Search efficiency: how close does a search get to the best config, in how many trials and
how much wall time; how sure can it be; and where a trial's wall time goes.

1. Grid: every config of a small space (a tiny CNN, 80 configs) measured once, each in a
   fresh trial process exactly as the tuner runs it (tuner.node.supervisor.run_trial_process, the
   accuracy guard once per numerics key), measured by time (4 s of timed steps); cached.
2. Reference: the grid's top configs measured again (--top, --repeats; cached), because one
   measurement on a shared machine is several % off the next; a config's reference value is
   the mean of all its measurements, and their spread is the run-to-run noise.
3. Replay: searches asked exactly as `tuner search` asks them (study.make_sampler,
   enqueue_baseline, the priors, study.enqueue_sweep, TPE), each trial told a fresh
   measurement (one of the config's real measurements, or its one measurement times a draw of
   the run-to-run noise), over many seeds; screening and confirmation simulated from the
   recorded step times. Judged by the reference value of the config the search would report
   best, after n trials and after t seconds of trial wall time. Plot with --plot.
4. Time per trial: timed steps vs process start, imports, model build, warm-up, guard.
5. --larger WORKDIR: instead, one real `tuner search` of a larger workload (ResNet-18, 64x64
   images, 64 configs) with the default search, and where its wall time went.

    python benchmarks/search_efficiency.py [--grid-cache FILE] [--top 20 --repeats 2]
        [--seeds 20] [--budget 20] [--plot docs/search-efficiency.png]
    python benchmarks/search_efficiency.py --larger tuner-runs/efficiency-larger
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
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
measure: {warmup_steps: 3, timed_steps: 10000, min_timed_steps: 5, max_timed_s: 4, max_cv: 0.25,
          screen_s: 1, prune_below: 0.7}
trial: {time_limit_s: 120}
guard: {steps: 5, batch_size: 16, tolerance: 0.02}
sampler: {name: tpe, seed: 0, startup_trials: 5}
"""


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


def larger_single_pass(workdir: Path) -> None:
    """The second, larger workload (ResNet-18 on 64x64 images, 64 configs): one real
    `tuner search` with the default search, and where its wall time went."""
    from optuna import load_study

    from tuner.driver import ranking as rk
    from tuner.driver import report as rp
    from tuner.driver.cli import main as tuner_main

    workdir.mkdir(parents=True, exist_ok=True)
    space_file = workdir / "efficiency_larger.yaml"
    space_file.write_text(LARGER, encoding="utf-8")
    started = time.monotonic()
    code = tuner_main(["search", "--space", str(space_file), "--workdir", str(workdir)])
    search_s = time.monotonic() - started
    study = load_study(study_name="efficiency_larger", storage=f"sqlite:///{workdir}/optuna.db")
    rows = rk.rows(study)
    walls = [row.info.get("ended_at", 0) - row.info.get("started_at", 0) for row in rows
             if row.info.get("started_at")]
    timed = [row.metrics.get("timed_s", 0.0) for row in rows if row.info.get("started_at")]
    kept = [sum(row.step_times_s) for row in rows if row.info.get("started_at")]
    best = rk.ranked(rows, "samples_per_sec")[0]
    first_found = min(row.number for row in rows if row.knobs == best.knobs)
    print(f"\nlarger workload (exit {code}): {len(rows)} trials in {search_s:.0f} s of search "
          f"wall time, {sum(walls):.0f} s in trial processes (the rest: driver, Ray, MLflow, "
          f"Optuna: {(search_s - sum(walls)) / len(rows):.1f} s a trial)")
    print(f"  best: trial {best.number} ({best.role}), {best.samples_per_sec:.1f} samples/s, "
          f"{best.metrics.get('speedup', 0):.2f}x the baseline; its config first measured at "
          f"trial {first_found}; {rp.changes(best.knobs, rk.baseline_row(rows).knobs)}")
    print(f"  timed steps / trial wall time: {sum(timed) / sum(walls):.1%} (kept rounds only "
          f"{sum(kept) / sum(walls):.1%}); roles: "
          f"{dict(Counter(row.role or 'candidate' for row in rows))}; statuses: "
          f"{dict(Counter(row.status for row in rows))}")


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
        searched = space.searched(knobs)
        print(f"  grid {len(done)}/{len(configs)}: {result['status']} "
              f"{result['metrics'].get('samples_per_sec', 0):.0f} samples/s, "
              f"{entry['wall_s']:.1f} s  {searched}", flush=True)
    return done


METHODS = {  # name: (sampler.name, start, priors, prune, confirmations, reused not counted)
    "random": ("random", "sampler", False, False, 0, False),
    "tpe from the start (before)": ("tpe", "sampler", False, False, 0, False),
    "tpe, re-proposals not counted": ("tpe", "sampler", False, False, 0, True),
    "sweep, then tpe": ("tpe", "sweep", True, False, 0, False),
    "sweep + screening": ("tpe", "sweep", True, True, 0, False),
    "sweep + screening + confirm 2": ("tpe", "sweep", True, True, 2, False),
    "... + re-proposals not counted": ("tpe", "sweep", True, True, 2, True),
}
BY_MEAN = False  # pick among confirmed configs by the confirming measurement alone
SCREEN_S = 1.0  # a pruned trial stops after this much timed time ...
PRUNE_BELOW = 0.7  # ... when it runs below this share of the best so far


@dataclass
class Config:
    """One config of the grid: every measurement of it, and what a trial of it costs."""

    knobs: dict[str, Any]
    values: list[float]  # samples/s: the grid's measurement, then any re-measurements
    wall_s: float
    screen_wall_s: float  # a trial stopped at screening
    screen_ratio: float  # what the screening window saw / the full measurement
    ok: bool
    noisy: bool

    @property
    def truth(self) -> float:
        """The reference: the mean of every measurement of it."""
        return statistics.fmean(self.values) if self.ok else 0.0

    def measure(self, rng: random.Random, run_to_run_cv: float) -> float:
        """What measuring it again says: one of its real measurements where it has several,
        else its one measurement scaled by a draw of the run-to-run noise."""
        if not self.ok:
            return 0.0
        if len(self.values) > 1:
            return rng.choice(self.values)
        return self.values[0] * rng.lognormvariate(0.0, run_to_run_cv)


def configs_of(entries: list[dict[str, Any]], again: dict[str, list[float]],
               max_timed_s: float) -> dict[str, Config]:
    configs = {}
    for entry in entries:
        key = json.dumps(entry["knobs"], sort_keys=True)
        ok = entry["status"] == "ok"
        steps = entry["step_times_s"]
        window, total = [], 0.0
        for step in steps:
            if total >= SCREEN_S:
                break
            window.append(step)
            total += step
        value = entry["metrics"].get("samples_per_sec", 0.0)
        screened = (entry["knobs"]["batch_size"] / statistics.median(window)
                    if ok and len(window) >= 5 else value)
        timed = sum(steps) * entry["metrics"].get("measure_rounds", 1.0)
        configs[key] = Config(
            knobs=entry["knobs"], values=again.get(key, [value]) if ok else [0.0],
            wall_s=entry["wall_s"],
            screen_wall_s=max(0.0, entry["wall_s"] - timed) + min(SCREEN_S, max_timed_s),
            screen_ratio=screened / value if ok and value else 1.0, ok=ok,
            noisy=bool(entry["metrics"].get("noisy")))
    return configs


def host_info() -> dict[str, Any]:
    """What the baseline trial reports of this machine, for the priors (the replay's trials
    ran here)."""
    from tuner.knobs.base import CPU_FEATURES, _cpu_flags

    return {"device": "cpu", "cpu_features": sorted(set(CPU_FEATURES) & _cpu_flags())}


def replay(space: Any, configs: dict[str, Config], method: str, seed: int, budget: int,
           run_to_run_cv: float) -> list[tuple[float, float]]:
    """(cumulative trial wall s, true value of the config the search would report best) after
    each of `budget` trials, asking the study exactly as a search does (baseline, priors,
    sweep, sampler) and telling it a fresh measurement (Config.measure), so noise misleads it
    as it misleads a real search. With confirmations, the last ones re-measure the best so far
    and the best is picked by its confirming measurement alone."""
    import dataclasses

    import optuna

    from tuner.driver import priors
    from tuner.driver import study as st

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, start, use_priors, prune, confirmations, reuse = METHODS[method]
    sampled_space = dataclasses.replace(space, sampler=dataclasses.replace(
        space.sampler, name=name, seed=seed, start=start, priors=use_priors))
    rng = random.Random(seed)
    told: dict[str, float] = {}  # config -> its (first) measurement, complete trials only
    measured: dict[str, float] = {}  # what a proposal of the same config again is told
    curve: list[tuple[float, float]] = []
    wall = 0.0

    def picked() -> float:
        ranked = [key for key in told if not configs[key].noisy]
        return configs[max(ranked, key=told.__getitem__)].truth if ranked else 0.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="maximize",
                                    sampler=st.make_sampler(sampled_space))
        st.enqueue_baseline(study, sampled_space)
        number = reused_in_a_row = 0
        while number < budget - confirmations and reused_in_a_row < 10:
            if number == 1 and use_priors:  # as the search does once the baseline is in
                st.enqueue_first(study, sampled_space,
                                 priors.prior_configs(sampled_space, host_info()), "priors")
            st.enqueue_sweep(study, sampled_space)
            trial = study.ask()
            key = json.dumps(st.suggest(trial, sampled_space), sort_keys=True)
            config = configs[key]
            if key in measured:  # as the search does: the result reused, nothing measured
                study.tell(trial, measured[key])
                if reuse:  # not counted against the budget (before: it took a trial)
                    reused_in_a_row += 1
                else:
                    number += 1
                    curve.append((wall, picked()))
                continue
            reused_in_a_row = 0
            number += 1
            value = config.measure(rng, run_to_run_cv)
            trial.set_user_attr(st.METRICS, {"noisy": float(config.noisy)})
            best = max(told.values(), default=0.0)
            if (prune and number > 0 and config.ok
                    and value * config.screen_ratio < PRUNE_BELOW * best):
                trial.report(value * config.screen_ratio, 0)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                wall += config.screen_wall_s
            else:
                study.tell(trial, value)
                told.setdefault(key, value)
                measured.setdefault(key, value)
                wall += config.wall_s
            curve.append((wall, picked()))
        top = sorted((k for k in told if not configs[k].noisy), key=told.__getitem__,
                     reverse=True)[:confirmations]
        confirmed: dict[str, float] = {}
        for key in top:
            again = configs[key].measure(rng, run_to_run_cv)
            confirmed[key] = (again + told[key]) / 2 if BY_MEAN else again
            wall += configs[key].wall_s
            curve.append((wall, configs[max(confirmed, key=confirmed.__getitem__)].truth))
    while len(curve) < budget:  # fewer trials than the budget measured nothing more
        curve.append(curve[-1])
    return curve


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
            config = TrialConfig(study="efficiency", trial_number=0, workload=space.workload,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-cache", type=Path, default=Path("tuner-runs/efficiency-grid.json"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=20, help="trials per replayed search")
    parser.add_argument("--top", type=int, default=5,
                        help="grid configs re-measured to find the run-to-run noise")
    parser.add_argument("--repeats", type=int, default=3, help="re-measurements of each")
    parser.add_argument("--plot", type=Path, help="write the curves as a PNG here")
    parser.add_argument("--larger", type=Path, metavar="WORKDIR",
                        help="instead: one real search of the larger workload, stores here")
    args = parser.parse_args()
    if args.larger:
        larger_single_pass(args.larger)
        return 0

    from tuner.driver.space import parse_space

    space = parse_space(SPACE, source="search_efficiency.py")
    args.grid_cache.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    entries = measure_grid(space, args.grid_cache)
    ok = [e for e in entries if e["status"] == "ok"]
    print(f"\ngrid: {len(entries)} configs ({len(ok)} ok), measured in "
          f"{sum(e['wall_s'] for e in entries):.0f} s of trial wall time "
          f"(this run: {time.monotonic() - started:.0f} s)")
    single = max((e for e in ok if not e["metrics"].get("noisy")),
                 key=lambda e: e["metrics"]["samples_per_sec"])
    print(f"grid's best single measurement: {single['metrics']['samples_per_sec']:.0f} samples/s, "
          f"{space.searched(single['knobs'])}")

    print(f"\nrun to run: the grid's top {args.top} configs measured {args.repeats} more times")
    again = run_to_run(space, entries, args.top, args.repeats,
                       args.grid_cache.with_suffix(".again.json"))
    spreads = [statistics.stdev(values) / statistics.fmean(values) for values in again.values()]
    for key, values in sorted(again.items(), key=lambda item: -statistics.fmean(item[1])):
        print(f"  {' '.join(f'{v:>7.0f}' for v in values)}  mean "
              f"{statistics.fmean(values):>7.0f}  cv "
              f"{statistics.stdev(values) / statistics.fmean(values):.3f}  "
              f"{space.searched(json.loads(key))}")
    run_to_run_cv = statistics.fmean(spreads)
    configs = configs_of(entries, again, space.measure.max_timed_s)
    ranked = sorted((c for c in configs.values() if c.ok and not c.noisy),
                    key=lambda c: -c.truth)
    grid_best = ranked[0].truth
    within = sum(c.truth >= 0.97 * grid_best for c in ranked)
    print(f"  run-to-run cv (mean over those configs): {run_to_run_cv:.3f}")
    print(f"reference (the best mean): {grid_best:.0f} samples/s, "
          f"{space.searched(ranked[0].knobs)}; {within} config(s) within 97% of it")

    checkpoints = [n for n in (1, 5, 8, 10, 16, 20) if n <= args.budget]
    twenty_percent = max(1, round(0.2 * len(entries)))
    print(f"\nbest-found / reference (true value of the config the search would report), "
          f"median over {args.seeds} seeds (share of seeds at >= 97%), after n trials; 20% of "
          f"the grid = {twenty_percent} trials")
    print(f"{'method':<30} " + " ".join(f"{'n=' + str(n):>14}" for n in checkpoints))
    curves = {}
    for name in METHODS:
        curves[name] = [replay(space, configs, name, seed, args.budget, run_to_run_cv)
                        for seed in range(args.seeds)]
        cells = []
        for n in checkpoints:
            ratios = [curve[n - 1][1] / grid_best for curve in curves[name]]
            reached = sum(r >= 0.97 for r in ratios) / len(ratios)
            cells.append(f"{statistics.median(ratios):>6.3f} ({reached:>4.0%})")
        print(f"{name:<30} " + " ".join(f"{cell:>14}" for cell in cells))
    print(f"\nat {twenty_percent} trials: median trial wall time used, best/reference median")
    for name, runs in curves.items():
        at = [curve[min(twenty_percent, len(curve)) - 1] for curve in runs]
        print(f"  {name:<30} {statistics.median(w for w, _ in at):>5.0f} s  "
              f"{statistics.median(b / grid_best for _, b in at):.3f}")

    if args.plot:
        plot(curves, grid_best, len(entries), args.plot)

    print("\nwhere a trial's wall time goes (mean share over the grid's trials):")
    for phase, share in time_breakdown(entries).items():
        print(f"  {phase:<56} {share:>6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
