"""Real GPU trials of gpu_train.yaml, through the node supervisor, without Ray, Optuna or MLflow.

A GPU machine lent for minutes may lack the driver's packages (Ray's wheel alone is ~80 MB), so
this runs what a search's trial on a GPU node runs, the same way: `run_trial_process`
(fresh `python -m tuner.worker`, time limit, memory cap, environment), for a fixed list of
gpu_train.yaml configs (the baseline, the GPU prior, then one knob group at a time), and prints
each trial's outcome, samples/s, speed-up over the baseline, GPU memory and the accuracy guard's
verdict against the baseline's guard loss, computed as the search computes it.

    python benchmarks/gpu_trials.py [--budget-s 330] [--timed-s 8] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from tuner.driver import guard as gd
from tuner.driver.space import load_space
from tuner.knobs import numerics_key
from tuner.node.supervisor import run_trial_process
from tuner.trial import TrialConfig, TrialResult

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "gpu_train.yaml"
PRIOR = {"dtype": "bf16", "memory_format": "channels_last", "cudnn_benchmark": "on"}
LOADER = {"num_workers": 4, "pin_memory": "on", "non_blocking": "on"}
# (label, changes from the baseline), cheapest first: compiled trials last, where the budget
# may not reach them
CONFIGS: list[tuple[str, dict[str, object]]] = [
    ("baseline", {}),
    ("gpu prior: bf16 + channels_last + cudnn_benchmark", PRIOR),
    ("fp32 + tf32 + cudnn_benchmark", {"tf32": "on", "cudnn_benchmark": "on"}),
    ("fp16 (gradient scaling) + channels_last + cudnn_benchmark",
     {**PRIOR, "dtype": "fp16"}),
    ("prior + loader workers 4, pinned, non_blocking", {**PRIOR, **LOADER}),
    ("prior + loader, batch 256", {**PRIOR, **LOADER, "batch_size": 256}),
    ("prior + loader, batch 512, 8 workers", {**PRIOR, **LOADER, "batch_size": 512,
                                              "num_workers": 8}),
    ("prior + compile inductor", {**PRIOR, "compile": "inductor"}),
    ("prior + compile inductor reduce-overhead (CUDA graphs)",
     {**PRIOR, "compile": "inductor", "compile_mode": "reduce-overhead"}),
]


def _line(label: str, result: TrialResult, base_sps: float | None, loss: float | None,
          violation: float | None, wall_s: float) -> str:
    if result.status != "ok":
        return f"{label}: {result.status}: {result.reason}  [{wall_s:.0f} s]"
    m = result.metrics
    speedup = f"{m['samples_per_sec'] / base_sps:.2f}x" if base_sps else "1.00x"
    guard_text = ("guard n/a" if violation is None else
                  f"guard {'ok' if violation <= 0 else 'REJECTED'} (loss {loss:.4f})")
    return (f"{label}: {m['samples_per_sec']:,.1f} samples/s ({speedup}), step "
            f"{1000 * m['step_time_median_s']:.1f} ms, cv {100 * m['step_time_cv']:.1f}%, "
            f"{int(m['timed_steps'])} steps, GPU peak {m.get('gpu_peak_reserved_mb', 0):,.0f} MB "
            f"reserved, compile {m.get('compile_s', 0):.1f} s, {guard_text}  [{wall_s:.0f} s]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="start no trial after this many seconds")
    parser.add_argument("--timed-s", type=float, default=8.0, help="measure.max_timed_s")
    parser.add_argument("--time-limit-s", type=float, default=240.0)
    parser.add_argument("--json", type=Path, default=None, help="write every result here")
    args = parser.parse_args()

    space = load_space(SPACE)
    measure = dataclasses.replace(space.measure, max_timed_s=args.timed_s)
    started = time.monotonic()
    base_sps: float | None = None
    base_guard: float | None = None
    guard_by_numerics: dict[str, float] = {}
    records = []
    for number, (label, changes) in enumerate(CONFIGS):
        if time.monotonic() - started > args.budget_s:
            print(f"{label}: not run (budget of {args.budget_s:.0f} s spent)")
            continue
        knobs = space.full_config(changes)
        key = numerics_key(knobs)
        config = TrialConfig(
            study="gpu_check", trial_number=number, workload=space.workload, knobs=knobs,
            measure=measure, guard=space.guard.settings(key not in guard_by_numerics),
            time_limit_s=args.time_limit_s, seed=space.guard.seed, gpus=1,
            memory_limit_mb=space.trial.memory_mb)
        trial_started = time.monotonic()
        result = TrialResult.from_dict(run_trial_process(config.to_json(), args.time_limit_s))
        wall_s = time.monotonic() - trial_started
        violation = loss = None
        if result.ok:
            if result.guard_loss is not None:
                guard_by_numerics[key] = result.guard_loss
            loss = guard_by_numerics.get(key)
            if number == 0:
                base_sps, base_guard = result.metrics["samples_per_sec"], loss
            if loss is not None and base_guard is not None:
                violation = gd.violation(loss, base_guard, space.guard.tolerance,
                                            space.guard.mode)
        print(_line(label, result, base_sps, loss, violation, wall_s), flush=True)
        if number == 0 and not result.ok:
            print(f"  baseline info: {json.dumps(result.info, default=str)[:1500]}")
        records.append({"label": label, "knobs": knobs, "status": result.status,
                        "reason": result.reason, "metrics": result.metrics,
                        "guard_loss": result.guard_loss, "violation": violation,
                        "wall_s": wall_s, "info": result.info})
    if records:
        info = records[0]["info"]
        print(f"gpu: {info.get('gpu', '?')}; versions {info.get('versions')}; "
              f"memory cap {info.get('memory_limit_mb')} MB")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str), encoding="utf-8")
    return 0 if records and records[0]["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
