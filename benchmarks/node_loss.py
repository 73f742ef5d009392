"""How long a search waits to hear that a Ray node died under a trial.

Starts a two-node Ray cluster on this machine (`ray start`, as tests/test_cluster.py does),
gives the worker node a trial-like task that sleeps, then loses that node, and times how long
`ray.get` on the task takes to raise (NodeDiedError: what the tuner turns into a lost,
re-queued trial) and how long Ray takes to mark the node dead (what the tuner watches for a
node that never fails its task). Two ways to lose it: its raylet and every process under it
SIGKILLed (the
processes die, their connections close at once), or SIGSTOPped (a machine that hangs or drops
off the network: nothing closes, only Ray's health check notices). Each with Ray's default
health check and with a faster one set in the nodes' environment.

    python benchmarks/node_loss.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from services import RayCluster

DRIVER = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")

@ray.remote(num_cpus=1, max_retries=0, resources={"bench_worker": 1})
def sleeps():
    time.sleep(600)

ref = sleeps.remote()
worker = next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("bench_worker"))
print("submitted", flush=True)
sys.stdin.readline()  # the node is lost now
lost = time.monotonic()
failed = dead = None
while time.monotonic() - lost < LIMIT_S and (failed is None or dead is None):
    if failed is None:
        try:
            ray.get(ref, timeout=0.2)
        except ray.exceptions.GetTimeoutError:
            pass
        except Exception as error:
            failed = (type(error).__name__, time.monotonic() - lost)
    if dead is None and not next(n["Alive"] for n in ray.nodes() if n["NodeID"] == worker):
        dead = time.monotonic() - lost
print("RESULT", failed[0] if failed else "-", failed[1] if failed else -1, dead or -1, flush=True)
"""
LIMIT_S = 120.0


def one_loss(settings: dict[str, str], how: int) -> tuple[str, float, float]:
    """(what ray.get raised, seconds until it did, seconds until Ray marked the node dead);
    -1 where it did not happen within LIMIT_S."""
    with tempfile.TemporaryDirectory() as folder:
        cluster = RayCluster(Path(folder))
        cluster.node_env = {key: value for key, value in cluster.node_env.items()
                            if not key.startswith("RAY_health_check")}
        cluster.node_env.update(settings)
        try:
            cluster.start_head("bench_head", cpus=1)
            cluster.add_node("bench_worker", cpus=1)
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
                   **cluster.auth_env}
            driver = subprocess.Popen(
                [sys.executable, "-c", DRIVER.replace("LIMIT_S", str(LIMIT_S)), cluster.address],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert driver.stdout.readline().strip() == "submitted"
            time.sleep(3)  # the task is running on the worker node
            cluster.kill_node("bench_worker", how)
            driver.stdin.write("\n")
            driver.stdin.flush()
            answer = ""
            while not answer.startswith("RESULT"):  # Ray prints its note on the dead node too
                answer = driver.stdout.readline()
            _, name, failed_s, dead_s = answer.split()
            driver.kill()  # its ray.shutdown may wait on a frozen node
            driver.wait()
            return name, float(failed_s), float(dead_s)
        finally:
            cluster.stop()


def _seconds(values: list[float]) -> str:
    seen = [v for v in values if v >= 0]
    if not seen:
        return f"never within {LIMIT_S:g} s"
    return (f"{statistics.median(seen):.1f} s median ({', '.join(f'{v:.1f}' for v in values)})"
            + (f", {len(values) - len(seen)} never" if len(seen) < len(values) else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = {"Ray's default health check": {},
             "RAY_health_check_period_ms=1000, failure_threshold=3": {
                 "RAY_health_check_period_ms": "1000",
                 "RAY_health_check_failure_threshold": "3"}}
    for how in (signal.SIGKILL, signal.SIGSTOP):
        for label, settings in cases.items():
            seen = [one_loss(settings, how) for _ in range(args.repeats)]
            errors = ", ".join(sorted({name for name, _, _ in seen}))
            print(f"node {how.name}ed, {label}: task failed ({errors}) after "
                  f"{_seconds([f for _, f, _ in seen])}; node marked dead after "
                  f"{_seconds([d for _, _, d in seen])}", flush=True)

if __name__ == "__main__":
    main()
