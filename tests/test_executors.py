"""The executor seam: a search runs through any `Executor`, not only Ray's.

`InlineExecutor` below is a whole executor (one small class, as a new one would be a new
module): it runs each trial's node supervisor in this process, one at a time, with no Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from conftest import SPACES

from tuner.driver import study as st
from tuner.driver.executors.base import Executor, Submitted
from tuner.driver.search import Search
from tuner.driver.space import load_space
from tuner.driver.stores import locations
from tuner.node.supervisor import run_trial_process
from tuner.trial import TrialConfig, TrialResult

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")


class InlineExecutor(Executor):
    """Each trial's supervisor runs here, when the search waits for a result."""

    def __init__(self) -> None:
        self.started = False
        self.ran: list[int] = []

    def start(self) -> None:
        self.started = True

    def describe(self) -> str:
        return "inline: this process, one trial at a time"

    def submit(self, config: TrialConfig) -> Submitted:
        return Submitted(config=config, ref=config.trial_number, cpus=1,
                         started=time.monotonic())

    def wait_any(self, running: list[Submitted],
                 timeout_s: float) -> list[tuple[Submitted, TrialResult]]:
        item = running[0]
        self.ran.append(item.config.trial_number)
        raw = run_trial_process(item.config.to_json(), item.config.time_limit_s)
        return [(item, TrialResult.from_dict(raw))]

    def shutdown(self) -> None:
        self.started = False


def search_inline(workdir: str) -> dict[str, object]:
    """A 3-trial search of quick_train through InlineExecutor; what a test checks of it."""
    import sys

    space = load_space(SPACES / "quick_train.yaml", ["budget.trials=3",
                                                     "measure.max_timed_s=0.5"])
    executor = InlineExecutor()
    lines: list[str] = []
    outcome = Search(space, locations(space, Path(workdir)), executor, out=lines.append).run()
    return {"ray_imported": "ray" in sys.modules, "started": executor.started,
            "ran": executor.ran, "lines": lines, "best": str(outcome.best_path),
            "rows": [(row.role, row.status) for row in outcome.rows]}


def test_a_search_runs_through_an_executor_of_its_own(tmp_path: Path) -> None:
    """In a fresh interpreter (this session's tests start Ray): Ray is not even imported."""
    code = ("import json, sys\nsys.path.insert(0, sys.argv[1])\n"
            "from test_executors import search_inline\n"
            "print(json.dumps(search_inline(sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent),
                           str(tmp_path / "w")], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert not seen["ray_imported"]  # nothing of Ray was started, or even loaded
    assert not seen["started"]  # shut down at the end
    assert seen["ran"] == [0, 1, 2]
    assert any(line.startswith("inline: this process") for line in seen["lines"])
    assert [status for _, status in seen["rows"]] == ["ok", "ok", "ok"]
    assert seen["rows"][0] == [st.BASELINE, "ok"] and Path(seen["best"]).exists()
    space = load_space(SPACES / "quick_train.yaml")
    where = locations(space, tmp_path / "w")
    study = optuna.load_study(study_name=space.study, storage=where.storage)
    assert all(t.user_attrs[st.METRICS]["samples_per_sec"] > 0 for t in study.trials)
    client = mlflow.MlflowClient(tracking_uri=where.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(space.study).experiment_id])
    assert sorted(r.data.tags["tuner.kind"] for r in runs) == ["search", "trial", "trial",
                                                                "trial"]


LISTENING = '''
import json, os, socket
from pathlib import Path
from tuner.driver.executors.ray import RayExecutor

def tree(root):
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    pids, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in pids} - pids
        pids |= more
        grown = bool(more)
    return pids

def listening(pids):
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, words))
    return sorted(found)

said = []
executor = RayExecutor(say=said.append)
executor.start()
print(json.dumps({"addresses": listening(tree(os.getpid())), "said": said,
                  "auth": os.environ.get("RAY_AUTH_MODE"), "describe": executor.describe()}))
executor.shutdown()
'''


def test_the_local_ray_listens_on_loopback_only_and_keeps_token_auth(tmp_path: Path) -> None:
    """The tuner's own Ray (no --ray-address): GCS, raylet and workers listen on loopback only,
    and an inherited RAY_AUTH_MODE=disabled is overruled, with a warning."""
    import os

    env = {key: value for key, value in os.environ.items()
           if key != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["RAY_AUTH_MODE"] = "disabled"
    run = subprocess.run([sys.executable, "-c", LISTENING], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["addresses"], seen  # Ray's servers were found
    assert set(seen["addresses"]) <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, seen
    assert seen["auth"] == "token"
    assert seen["said"] == ["warning: RAY_AUTH_MODE=disabled from the environment is not used: "
                            "the tuner's own local Ray starts with token authentication (for a "
                            "Ray without it, start one yourself and give --ray-address)"]
    assert "(local, on loopback)" in seen["describe"]


def test_a_waiting_trial_says_where_it_waits() -> None:
    """A local run's trial waits on this machine, not "on the cluster" (issue 22)."""
    from types import SimpleNamespace

    from tuner.driver.executors.ray import RayExecutor
    from tuner.driver.search.console import Console

    assert RayExecutor().room == "on this machine"
    assert RayExecutor(address="ray://head:10001").room == "on the cluster"
    lines: list[str] = []
    console = Console(lines.append, "USD", RayExecutor().room)
    console.started_line("[2/4]", 1, "sweep", None, SimpleNamespace(waiting=True, cpus=2, gpus=0),
                         60, "batch_size=16")
    assert lines == ["[2/4] trial 1 waits for room on this machine (sweep, 2 CPUs, limit 1m00s): "
                     "batch_size=16"]


def test_a_rejected_trial_says_so_when_it_is_also_noisy() -> None:
    """The guard's verdict is never hidden behind the noise verdict."""
    from tuner import metrics as mx
    from tuner.driver.search.console import Console
    from tuner.trial import OK, TrialResult

    metrics = {mx.SAMPLES_PER_SEC: 10.0, mx.SAMPLES_PER_DOLLAR: 1000.0, mx.STEP_TIME_CV: 0.2,
               mx.NOISY: 1.0, mx.MEASURE_ROUNDS: 3.0, mx.SPEEDUP: 1.5}
    result = TrialResult(status=OK, reason="guard loss 2.30 vs 0.70 (+229%)")
    line = Console(print, "USD").result_line(3, result, metrics, 0.5, None)
    assert line.startswith("  trial 3 REJECTED and NOISY after 3 rounds, never ranked: 10.00 "
                           "samples/s (1.50x baseline)"), line
    assert "; guard loss 2.30 vs 0.70" in line
