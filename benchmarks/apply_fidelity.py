"""Apply fidelity: does the speed-up a search reports survive into the user's own job?

For each example job (examples/jobs): a small `tuner search`, then, outside the tuner, the job
run as it is (no config: the baseline's settings are its defaults) and the job run with the
best config by `tuner launch` (process half) and `Tuned` (in-process half), side by side.
A job's loop throughput is taken from two runs of different length, N/(T(2N) - T(N)), so start-up
(imports, model build, first compile) cancels out. Prints, per job, the reported speed-up,
the applied one, and their ratio.

    python benchmarks/apply_fidelity.py [--jobs text_classifier gan tuned_script] [--repeats 2]

Takes about 5 minutes a job on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "examples" / "jobs"
# job -> (command-line arguments for `size` units of work, samples in one unit)
SIZES = {
    "text_classifier": (lambda size: ["--samples", str(2048 * size)], 2048),
    "gan": (lambda size: ["--samples", str(2048 * size)], 2048),
    "tuned_script": (lambda size: ["--epochs", str(8 * size)], 8192),
}


def search(job: str, folder: Path) -> tuple[Path, float]:
    """A small search of the job's own space; its best config and reported speed-up."""
    raw = yaml.safe_load((JOBS / f"{job}.yaml").read_text(encoding="utf-8"))
    if "script" in raw["workload"]:
        raw["workload"]["script"] = str(ROOT / raw["workload"]["script"])
    raw["budget"] = {"trials": 5, "timeout_s": 600}
    space = folder / f"{job}.yaml"
    space.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "examples"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "tuner.driver.cli", "search", "--space", str(space),
                    "--workdir", str(folder / "runs")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    best = folder / "runs" / "best" / f"{raw['study']}.yaml"
    return best, float(yaml.safe_load(best.read_text(encoding="utf-8"))["speedup_over_baseline"])


def wall_s(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
                   env={key: value for key, value in os.environ.items()
                        if key != "TUNER_CONFIG"})
    return time.perf_counter() - started


def throughput(job: str, best: Path | None, repeats: int) -> float:
    """Samples/s of the job's loop: the longer run's extra samples over its extra time."""
    arguments, unit = SIZES[job]
    prefix = ([sys.executable, "-m", "tuner.driver.cli", "launch", str(best), "--"]
              if best else [])
    rates = []
    for _ in range(repeats):
        short = wall_s([*prefix, sys.executable, str(JOBS / f"{job}.py"), *arguments(1)])
        long = wall_s([*prefix, sys.executable, str(JOBS / f"{job}.py"), *arguments(2)])
        rates.append(unit / max(long - short, 1e-9))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=2)
    arguments = parser.parse_args()
    print(f"{'job':16} {'reported':>9} {'untuned/s':>10} {'applied/s':>10} {'applied':>8} "
          f"{'ratio':>6}  best config", flush=True)
    for job in arguments.jobs:
        with tempfile.TemporaryDirectory(prefix="tuner-fidelity-") as folder:
            best, reported = search(job, Path(folder))
            knobs = yaml.safe_load(best.read_text(encoding="utf-8"))["knobs"]
            untuned = throughput(job, None, arguments.repeats)
            applied = throughput(job, best, arguments.repeats)
            speedup = applied / untuned
            shown = {k: v for k, v in knobs.items()
                     if k in ("batch_size", "num_workers", "dtype", "memory_format", "threads")}
            print(f"{job:16} {reported:>8.2f}x {untuned:>10.1f} {applied:>10.1f} "
                  f"{speedup:>7.2f}x {speedup / reported:>6.2f}  {shown}", flush=True)


if __name__ == "__main__":
    main()
