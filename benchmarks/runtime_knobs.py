"""The process-environment knobs side by side: allocator, OpenMP runtime, affinity, IPEX.

Runs one base config as trial processes, exactly as the tuner runs them, once per environment
variant, in rounds that interleave the variants (so drift of a shared machine hits them alike),
and prints each variant's median samples/sec as a ratio to the default environment measured in
the same rounds. The base is the otherwise-best config of a search (`--best`, the YAML a search
writes to tuner-runs/best/) with its environment knobs reset to their defaults; without
`--best`, the published study's best CPU settings that this machine can run (batch 16,
channels_last, fp32). The workload comes from the space file.

    python benchmarks/runtime_knobs.py --best tuner-runs/best/cpu_train.yaml --rounds 2

Any other space and variants: the space's baseline is the base, e.g. inference backends:

    python benchmarks/runtime_knobs.py --space search_spaces/cpu_infer.yaml \
        --variant "compiled=memory_format:channels_last,compile:inductor" \
        --variant "onnxruntime=backend:onnxruntime"
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import yaml

from tuner.driver.space import load_space
from tuner.knobs import REGISTRY
from tuner.node.supervisor import run_trial_process
from tuner.trial import GuardSettings, MeasureSettings, TrialConfig, TrialResult

# The knobs that shape the process environment rather than the training step.
ENVIRONMENT = ("threads", "interop_threads", "allocator", "omp_runtime", "affinity", "numa",
               "ipex")
PUBLISHED_BEST = {"batch_size": 16, "num_workers": 0, "dtype": "fp32",
                  "memory_format": "channels_last", "compile": "none"}
DEFAULT = "default (glibc malloc, gomp)"
VARIANTS = {
    DEFAULT: {},
    "jemalloc": {"allocator": "jemalloc"},
    "tcmalloc": {"allocator": "tcmalloc"},
    "iomp": {"omp_runtime": "iomp"},
    "affinity cores": {"affinity": "cores"},
    "tcmalloc + cores": {"allocator": "tcmalloc", "affinity": "cores"},
    "iomp + cores": {"omp_runtime": "iomp", "affinity": "cores"},
    "tcmalloc + iomp + cores (run_cpu-like)": {"allocator": "tcmalloc", "omp_runtime": "iomp",
                                               "affinity": "cores"},
    "jemalloc + iomp + cores": {"allocator": "jemalloc", "omp_runtime": "iomp",
                                "affinity": "cores"},
    "ipex optimize": {"ipex": "optimize"},
    "compile ipex": {"compile": "ipex"},
    "ipex optimize + compile ipex": {"ipex": "optimize", "compile": "ipex"},
}


def base_config(best_file: str | None) -> tuple[dict[str, object], str]:
    """The knobs every variant shares, and where they came from."""
    if best_file is None:
        return dict(PUBLISHED_BEST), "the published study's best CPU settings"
    best = yaml.safe_load(Path(best_file).read_text(encoding="utf-8"))
    knobs = {name: value for name, value in best["knobs"].items() if name not in ENVIRONMENT}
    return knobs, f"trial {best.get('trial')}'s config from {best_file}, environment knobs reset"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="search_spaces/cpu_train.yaml")
    parser.add_argument("--best", help="best-config YAML written by a search of that space")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timed-steps", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KNOB:VALUE,...",
                        help="run these variants instead (besides the default), e.g. "
                             "'ort=backend:onnxruntime' or 'cl=memory_format:channels_last,"
                             "compile:inductor'")
    args = parser.parse_args()

    space = load_space(args.space)
    base, origin = base_config(args.best)
    if not args.best and args.space != parser.get_default("space"):
        base, origin = space.full_config({}), f"the baseline of {args.space}"
    chosen = dict(VARIANTS) if not args.variant else {DEFAULT: {}, **{
        name: {knob: yaml.safe_load(value) for knob, value in
               (pair.split(":", 1) for pair in spec.split(","))}
        for name, spec in (item.split("=", 1) for item in args.variant)}}
    variants = {name: extra for name, extra in chosen.items()
                if not args.only or name in args.only or name == DEFAULT}
    cpus = len(os.sched_getaffinity(0))
    print(f"base: {base} ({origin}); workload {space.workload.name} {space.workload.options}; "
          f"{cpus} cores", flush=True)
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    not_run: dict[str, str] = {}
    for round_number in range(args.rounds):
        for name, extra in variants.items():
            if name in not_run:
                continue
            config = TrialConfig(
                study="runtime-knobs", trial_number=round_number, workload=space.workload,
                knobs={**base, **extra},
                measure=MeasureSettings(warmup_steps=2, timed_steps=args.timed_steps,
                                        min_timed_steps=args.timed_steps, max_timed_s=600,
                                        max_cv=0.10, remeasure=1),
                guard=GuardSettings(run=False), time_limit_s=900, cpus=cpus)
            result = TrialResult.from_dict(run_trial_process(config.to_json(), 900))
            if not result.ok:
                print(f"round {round_number} {name}: {result.status}: {result.reason}",
                      flush=True)
                not_run[name] = f"{result.status}: {result.reason}"
                continue
            sps = result.metrics["samples_per_sec"]
            speeds[name].append(sps)
            compiled = result.metrics.get("compile_s", 0.0)
            latency = (f"p50 {result.metrics['latency_p50_ms']:.0f} ms, p99 "
                       f"{result.metrics['latency_p99_ms']:.0f} ms per batch, "
                       if "latency_p99_ms" in result.metrics else "")
            print(f"round {round_number} {name}: {sps:.2f} samples/s, cv "
                  f"{result.metrics['step_time_cv']:.1%}, "
                  + (f"compile {compiled:.1f} s, " if compiled > 1 else "") + latency
                  + f"affinity {result.info['affinity']}, "
                  f"preloaded {[p.rsplit('/', 1)[-1] for p in result.info['preloaded']]}",
                  flush=True)
    reference = statistics.median(speeds[DEFAULT] or [float("nan")])
    print(f"\n{space.workload.name} at {base}, {cpus} cores; median of "
          f"{args.rounds} interleaved rounds")
    print("| environment | samples/s | vs default |")
    print("|---|---:|---:|")
    for name, values in speeds.items():
        if values:
            median = statistics.median(values)
            print(f"| {name} | {median:.2f} | {median / reference:.2f}x |")
        else:
            print(f"| {name} | not run ({not_run.get(name, 'no result')}) | - |")
    assert all(name in REGISTRY for extra in VARIANTS.values() for name in extra)


if __name__ == "__main__":
    main()
