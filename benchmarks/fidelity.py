"""Fidelity: does the tuner report the speed a plain training loop gets?

Re-measures the baseline and the best config of a finished study with a plain PyTorch loop
(no Ray, no tuner code in the timed path: the model, loader, autocast, layout and compile are
written out below), each config in a fresh process as the tuner does, and prints
tuner-reported / plain-measured samples/sec. Close to 1.0 means the tuner's numbers can be
taken at face value.

    python benchmarks/fidelity.py --study cpu_train [--storage sqlite:///tuner-runs/optuna.db]
    python benchmarks/fidelity.py --study cpu_train --paired 2 --skip-baseline

`--paired N`: also N rounds of the best config measured alternately by the plain loop and by
the tuner's own trial process (the node supervisor, as a search runs it; no guard), so the
machine's drift between the search and this script is not read as a difference of the loops.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PLAIN_LOOP = r'''
import json, os, statistics, sys, time
import torch, torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset

cfg = json.loads(sys.argv[1])
knobs, options = cfg["knobs"], cfg["workload"]["options"]
if knobs.get("threads", "default") != "default":
    torch.set_num_threads(int(knobs["threads"]))
size, classes = options.get("image_size", 224), options.get("num_classes", 10)

class Synthetic(Dataset):
    def __len__(self): return 10**6
    def __getitem__(self, i): return torch.rand(3, size, size), i % classes

if cfg["workload"]["name"] == "tiny_cnn":
    w = options.get("width", 16)
    model = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                          nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, classes))
else:
    name = options.get("model", "resnet50")
    model = getattr(torchvision.models, name)(weights=None, num_classes=classes)
channels_last = knobs.get("memory_format") == "channels_last"
if channels_last:
    model = model.to(memory_format=torch.channels_last)
optimizer = torch.optim.SGD(model.parameters(), lr=options.get("lr", 0.01),
                            momentum=options.get("momentum", 0.9))
forward = model
if knobs.get("compile", "none") != "none":
    mode = knobs.get("compile_mode", "default")
    forward = torch.compile(model, backend=knobs["compile"],
                            **({} if mode == "default" else {"mode": mode}))
dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[knobs.get("dtype", "fp32")]
loader = iter(DataLoader(Synthetic(), batch_size=knobs["batch_size"],
                         num_workers=knobs.get("num_workers", 0)))
times, last, started = [], time.perf_counter(), None
for step in range(cfg["warmup"] + cfg["steps"]):
    x, y = next(loader)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = nn.functional.cross_entropy(forward(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    now = time.perf_counter()
    if step >= cfg["warmup"]:
        times.append(now - last)
        started = started or last
        if len(times) >= 3 and now - started > cfg["max_seconds"]:
            break
    last = now
print(json.dumps({"samples_per_sec": knobs["batch_size"] / statistics.median(times),
                  "steps": len(times)}))
'''


def measure_plain(knobs: dict, workload: dict, warmup: int, steps: int, max_seconds: float) -> dict:
    """The plain loop in a fresh process, under the process environment the config sets (an
    allocator or OpenMP runtime preloaded, OMP/KMP variables), as the trial process ran: only
    the in-process loop is written out plainly. (Without it, a tcmalloc best measured 1.2-1.3x
    its plain loop: the allocator's effect, not the tuner's.)"""
    from tuner.node.supervisor import trial_env

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(trial_env({}, knobs)[1])  # LD_PRELOAD, OMP_*/KMP_* of the allocator/runtime knobs
    if knobs.get("threads", "default") != "default":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(knobs["threads"])
    config = {"knobs": knobs, "workload": workload, "warmup": warmup, "steps": steps,
              "max_seconds": max_seconds}
    done = subprocess.run([sys.executable, "-c", PLAIN_LOOP, json.dumps(config)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", default="sqlite:///tuner-runs/optuna.db")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=45.0)
    parser.add_argument("--trial", type=int, nargs="*", default=[],
                        help="also re-measure these trial numbers (e.g. the best's runners-up)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--paired", type=int, default=0,
                        help="rounds of plain loop / tuner trial process, alternately, on the best")
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    workload = study.user_attrs.get("workload")
    if workload is None:  # studies from before the workload was stored: read their space file
        from tuner.driver.space import load_space

        spec = load_space(study.user_attrs["space_source"]).workload
        workload = {"name": spec.name, "options": spec.options}
    done = [t for t in study.get_trials() if "metrics" in t.user_attrs
            and t.user_attrs.get("status") == "ok" and t.user_attrs.get("guard_violation", 0) <= 0
            and t.user_attrs.get("duplicate_of") is None]
    baseline = next(t for t in done if t.user_attrs.get("role") == "baseline")
    best = max(done, key=lambda t: t.user_attrs["metrics"]["samples_per_sec"])
    print(f"study {args.study}: workload {workload['name']} {workload['options']}")
    print(f"{'config':<10} {'trial':>5} {'tuner samples/s':>16} {'plain samples/s':>16} "
          f"{'tuner/plain':>12}  knobs")
    chosen = [] if args.skip_baseline else [("baseline", baseline)]
    chosen.append(("best", best))
    chosen += [(f"trial {t.number}", t) for t in done if t.number in args.trial]
    for label, trial in chosen:
        knobs = trial.user_attrs["knobs"]
        reported = trial.user_attrs["metrics"]["samples_per_sec"]
        started = time.monotonic()
        plain = measure_plain(knobs, workload, args.warmup, args.steps, args.max_seconds)
        print(f"{label:<10} {trial.number:>5} {reported:>16.3f} {plain['samples_per_sec']:>16.3f} "
              f"{reported / plain['samples_per_sec']:>12.3f}  {knobs}  "
              f"({plain['steps']} steps, {time.monotonic() - started:.0f} s)", flush=True)
    for round_number in range(1, args.paired + 1):
        plain = measure_plain(best.user_attrs["knobs"], workload, args.warmup, args.steps,
                              args.max_seconds)
        tuner = tuner_trial(best.user_attrs["knobs"], workload, study.user_attrs["space_source"])
        print(f"paired round {round_number}: best (trial {best.number}) plain "
              f"{plain['samples_per_sec']:.3f}, tuner trial process {tuner:.3f}, tuner/plain "
              f"{tuner / plain['samples_per_sec']:.3f}", flush=True)


def tuner_trial(knobs: dict, workload: dict, space_source: str) -> float:
    """Samples/s of one trial process as a search runs it (the space's measure settings)."""
    from tuner.driver.space import load_space
    from tuner.node.supervisor import run_trial_process
    from tuner.trial import TrialConfig, TrialResult, WorkloadSpec

    space = load_space(space_source)
    config = TrialConfig(study="fidelity", trial_number=0,
                         workload=WorkloadSpec(workload["name"], workload["options"]),
                         knobs=knobs, measure=space.measure, guard=space.guard.settings(False),
                         time_limit_s=space.trial.time_limit_s)
    result = TrialResult.from_dict(run_trial_process(config.to_json(), config.time_limit_s))
    if not result.ok:
        raise SystemExit(f"the tuner's trial process did not measure: {result.reason}")
    return result.metrics["samples_per_sec"]


if __name__ == "__main__":
    main()
