"""Soak: every trial fault, many times, with the search itself SIGKILLed at random moments.

Each round runs a fresh study of tests/faulty_workloads.py:chaos (each fault kind twice, once
per memory format, plus healthy and unsupported configs) through real Ray, SQLite and MLflow,
kills `tuner search` with SIGKILL at random moments, runs it again until it finishes, then checks
what the stores hold. Prints the table in docs/reliability.md.

    PYTHONPATH=tests python benchmarks/soak.py --rounds 3 --kills 3
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
FAULTS = {1: "exception", 2: "abort (SIGABRT)", 3: "segfault (SIGSEGV)", 4: "memory past its cap",
          5: "hang", 64: "noisy timings (every round)", 32: "noisy timings (first round)"}
EXPECTED = {1: "failed", 2: "crashed", 3: "crashed", 4: "oom", 5: "timeout", 64: "ok", 32: "ok"}


def space_text(study: str) -> str:
    firsts = [f"  - {{batch_size: {b}, memory_format: {m}}}" for b in FAULTS
              for m in ("contiguous", "channels_last")]
    firsts += ["  - {compile: inductor, compile_mode: reduce-overhead}",
               "  - {compile: inductor, compile_mode: reduce-overhead, batch_size: 16}",
               "  - {batch_size: 16}"]
    return f"""study: {study}
workload: {{name: "faulty_workloads:chaos", options: {{image_size: 16}}}}
knobs:
  batch_size: [8, 1, 2, 3, 4, 5, 64, 32, 16]
  memory_format: [contiguous, channels_last]
  compile: [none, inductor]
  compile_mode: [default, reduce-overhead]
  threads: [1]
baseline: {{batch_size: 8, threads: 1, compile: none, memory_format: contiguous}}
try_first:
{chr(10).join(firsts)}
budget: {{trials: {len(firsts) + 1}, timeout_s: 3600}}
measure: {{warmup_steps: 1, timed_steps: 4, min_timed_steps: 4, max_cv: 0.15, remeasure: 2}}
trial: {{time_limit_s: 20, max_concurrent: 2, memory_mb: 900, heartbeat_s: 2}}
guard: {{steps: 2, batch_size: 8}}
sampler: {{name: random, seed: 0}}
"""


def run_round(folder: Path, study: str, kills: int, rng: random.Random) -> dict[str, object]:
    (folder / "space.yaml").write_text(space_text(study), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"),
           "TUNER_HOST_LOCK": str(folder / "host.lock")}
    command = [sys.executable, "-m", "tuner.driver.cli", "search", "--space", "space.yaml"]
    storage = f"sqlite:///{folder / 'tuner-runs' / 'optuna.db'}"
    completed_before: dict[int, float] = {}
    lost = 0
    for _ in range(kills):
        search = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(search.stdout,), daemon=True)
        reader.start()
        time.sleep(rng.uniform(3.0, 40.0))
        search.send_signal(signal.SIGKILL)
        search.wait()
        reader.join(timeout=10)
        time.sleep(2)
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials()
        except Exception:  # noqa: BLE001 - killed before the study existed
            continue
        now = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
        lost += sum(1 for number, value in completed_before.items() if now.get(number) != value)
        completed_before = now
    started = time.monotonic()
    final = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                           check=False)
    trials = optuna.load_study(study_name=study, storage=storage).get_trials()
    now = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    lost += sum(1 for number, value in completed_before.items() if now.get(number) != value)
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'tuner-runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id],
                              max_results=5000)
    trial_runs = Counter(r.data.tags.get("tuner.trial") for r in runs
                         if r.data.tags.get("tuner.kind") == "trial")
    return {
        "returncode": final.returncode, "final_s": time.monotonic() - started, "trials": trials,
        "lost": lost, "running_in_mlflow": sum(r.info.status == "RUNNING" for r in runs),
        "runs_per_trial_max": max(trial_runs.values(), default=0),
        "trials_without_run": sum(1 for t in trials if t.state.is_finished()
                                  and str(t.number) not in trial_runs),
        "tail": final.stdout[-3000:] + final.stderr[-2000:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the search per round")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    injected: Counter[str] = Counter()
    as_expected: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for round_number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tuner-soak-") as tmp:
            result = run_round(Path(tmp), f"soak{round_number}", args.kills, rng)
        trials = result["trials"]
        print(f"round {round_number}: final search exit {result['returncode']} after "
              f"{result['final_s']:.0f} s; {len(trials)} trials; lost {result['lost']}; "
              f"MLflow RUNNING {result['running_in_mlflow']}, max runs per trial "
              f"{result['runs_per_trial_max']}, trials without a run "
              f"{result['trials_without_run']}", flush=True)
        if result["returncode"] != 0:
            print(result["tail"])
        totals["rounds"] += 1
        totals["searches killed"] += args.kills
        totals["lost"] += result["lost"]
        totals["final exit != 0"] += result["returncode"] != 0
        totals["MLflow runs left RUNNING"] += result["running_in_mlflow"]
        totals["trials missing from MLflow"] += result["trials_without_run"]
        totals["trials with >1 MLflow run"] += result["runs_per_trial_max"] > 1
        for trial in trials:
            attrs = trial.user_attrs
            status = attrs.get("status", "interrupted" if trial.state == TrialState.FAIL else "")
            totals[f"status {status}"] += 1
            if status == "interrupted":
                retried = any(trial.number in t.system_attrs.get("retry_history", [])
                              for t in trials)
                injected["search SIGKILLed while the trial ran"] += 1
                as_expected["search SIGKILLed while the trial ran"] += retried
                continue
            knobs = attrs.get("knobs", {})
            batch = knobs.get("batch_size")
            if knobs.get("compile_mode") == "reduce-overhead":
                injected["unsupported choice"] += 1
                as_expected["unsupported choice"] += trial.state == TrialState.PRUNED
            elif batch in FAULTS:
                injected[FAULTS[batch]] += 1
                ok = status == EXPECTED[batch]
                if batch == 64:
                    ok = ok and attrs["metrics"]["noisy"] == 1
                if batch == 32:
                    ok = ok and attrs["metrics"]["noisy"] == 0
                as_expected[FAULTS[batch]] += ok
    print("\n| fault injected | times | recorded as expected |")
    print("|---|---:|---:|")
    for kind, count in injected.most_common():
        print(f"| {kind} | {count} | {as_expected[kind]} |")
    print()
    for name, count in sorted(totals.items()):
        print(f"{name}: {count}")


if __name__ == "__main__":
    main()
