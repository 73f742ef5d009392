"""The figures a GPU search should publish, read from finished studies' storage.

Prints, for a GPU study (e.g. gpu_train.yaml run on a GPU machine): the baseline's and the
best config's samples/s, the speed-up, the best's peak GPU memory, and samples per dollar
against a CPU study's best (e.g. cpu_train.yaml), each at its own study's price.

    tuner search --space search_spaces/gpu_train.yaml          # on the GPU machine
    python benchmarks/gpu_report.py --gpu-study gpu_train --cpu-study cpu_train \\
        [--storage sqlite:///tuner-runs/optuna.db] [--cpu-storage URL]
"""

from __future__ import annotations

import argparse
import sys

import optuna

from tuner.driver import ranking as rk
from tuner.driver import report as rp


def _rows(study: str, storage: str) -> list[rk.Row]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return rk.rows(optuna.load_study(study_name=study, storage=storage))


def _describe(label: str, row: rk.Row, base: rk.Row | None) -> str:
    m = row.metrics
    memory = ""
    if "gpu_peak_reserved_mb" in m:
        memory = (f", GPU peak {m['gpu_peak_allocated_mb']:,.0f} MB allocated / "
                  f"{m['gpu_peak_reserved_mb']:,.0f} MB reserved")
    return (f"{label}: trial {row.number}, {row.samples_per_sec:.2f} samples/s, "
            f"{m.get('samples_per_dollar', 0):,.0f} samples/$ at {m.get('price_per_hour', 0):g}/h"
            f"{memory}; {rp.changes(row.knobs, base.knobs if base else None)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-study", default="gpu_train")
    parser.add_argument("--cpu-study", default="cpu_train")
    parser.add_argument("--storage", default="sqlite:///tuner-runs/optuna.db")
    parser.add_argument("--cpu-storage", default=None, help="default: --storage")
    args = parser.parse_args()

    gpu_rows = _rows(args.gpu_study, args.storage)
    base, ranked = rk.baseline_row(gpu_rows), rk.ranked(gpu_rows, "samples_per_sec")
    if base is None or not ranked:
        print(f"{args.gpu_study}: no measured baseline and best yet", file=sys.stderr)
        return 1
    best = ranked[0]
    print(_describe("GPU baseline", base, base))
    print(_describe("GPU best", best, base))
    print(f"GPU speed-up, best over baseline: {best.samples_per_sec / base.samples_per_sec:.2f}x")
    failed = [row for row in gpu_rows if row.status != "ok"]
    for text, count in rp.failures_by_reason(failed):
        print(f"  {count} x {text}")

    cpu_rows = _rows(args.cpu_study, args.cpu_storage or args.storage)
    cpu_ranked = rk.ranked(cpu_rows, "samples_per_dollar")
    if not cpu_ranked:
        print(f"{args.cpu_study}: no measured trial to compare with")
        return 0
    cpu_best = cpu_ranked[0]
    print(_describe("CPU best per $", cpu_best, rk.baseline_row(cpu_rows)))
    gpu_per_dollar = max(row.metrics.get("samples_per_dollar", 0.0) for row in ranked)
    ratio = gpu_per_dollar / cpu_best.metrics["samples_per_dollar"]
    print(f"samples per $: GPU best {gpu_per_dollar:,.0f} vs CPU best "
          f"{cpu_best.metrics['samples_per_dollar']:,.0f}: the GPU is {ratio:.2f}x "
          f"{'cheaper' if ratio >= 1 else 'dearer'} per sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
