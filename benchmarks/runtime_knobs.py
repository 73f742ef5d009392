"""The process-environment knobs side by side: allocator, OpenMP runtime, affinity.

Runs one base config (default: the published study's best CPU settings that this machine can
run: ResNet-50, batch 16, channels_last, fp32) as trial processes, exactly as the tuner runs
them, once per environment variant, in rounds that interleave the variants (so drift of a
shared machine hits them alike), and prints each variant's median samples/sec as a ratio to
the default environment measured in the same rounds.

    python benchmarks/runtime_knobs.py --rounds 2 [--image-size 224] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import statistics

from tuner import runtime_libs
from tuner.executor import run_trial_process
from tuner.trial import GuardSettings, MeasureSettings, TrialConfig, TrialResult, WorkloadSpec

VARIANTS = {
    "default (glibc malloc, gomp)": {},
    "jemalloc": {"allocator": "jemalloc"},
    "tcmalloc": {"allocator": "tcmalloc"},
    "iomp": {"omp_runtime": "iomp"},
    "affinity cores": {"affinity": "cores"},
    "tcmalloc + iomp + cores (run_cpu-like)": {"allocator": "tcmalloc", "omp_runtime": "iomp",
                                               "affinity": "cores"},
    "jemalloc + iomp + cores": {"allocator": "jemalloc", "omp_runtime": "iomp",
                                "affinity": "cores"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--timed-steps", type=int, default=5)
    args = parser.parse_args()
    import os

    cpus = len(os.sched_getaffinity(0))
    base = {"batch_size": args.batch_size, "num_workers": 0, "dtype": "fp32",
            "memory_format": "channels_last", "compile": "none", "threads": "default"}
    speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_number in range(args.rounds):
        for name, extra in VARIANTS.items():
            config = TrialConfig(
                study="runtime-knobs", trial_number=round_number,
                workload=WorkloadSpec("resnet50", {"image_size": args.image_size}),
                knobs={**base, **extra},
                measure=MeasureSettings(warmup_steps=2, timed_steps=args.timed_steps,
                                        min_timed_steps=args.timed_steps, max_timed_s=600,
                                        max_cv=0.10, remeasure=1),
                guard=GuardSettings(run=False), time_limit_s=900, cpus=cpus)
            result = TrialResult.from_dict(run_trial_process(config.to_json(), 900))
            if not result.ok:
                print(f"round {round_number} {name}: {result.status}: {result.reason}",
                      flush=True)
                continue
            sps = result.metrics["samples_per_sec"]
            speeds[name].append(sps)
            print(f"round {round_number} {name}: {sps:.2f} samples/s, cv "
                  f"{result.metrics['step_time_cv']:.1%}, affinity {result.info['affinity']}, "
                  f"preloaded {[p.rsplit('/', 1)[-1] for p in result.info['preloaded']]}",
                  flush=True)
    reference = statistics.median(speeds["default (glibc malloc, gomp)"] or [float("nan")])
    print(f"\nResNet-50 training, batch {args.batch_size}, {args.image_size}px, channels_last, "
          f"fp32, {cpus} cores; median of {args.rounds} interleaved rounds")
    print("| environment | samples/s | vs default |")
    print("|---|---:|---:|")
    for name, values in speeds.items():
        if values:
            median = statistics.median(values)
            print(f"| {name} | {median:.2f} | {median / reference:.2f}x |")
        else:
            missing = [k for k in ("jemalloc", "tcmalloc", "iomp") if k in name
                       and runtime_libs.find(k) is None]
            print(f"| {name} | not run ({', '.join(missing) or 'failed'}) | - |")


if __name__ == "__main__":
    main()
