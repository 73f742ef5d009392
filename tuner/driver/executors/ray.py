"""Ray's executor (the default): local Ray, or a cluster at an address; each trial a Ray task
that runs the node supervisor with the trial's CPUs and GPU, a fresh worker process each time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import progress as pg
from tuner.driver import cluster
from tuner.driver.executors.base import Executor, Submitted, gpus_for
from tuner.driver.search.standing import counted
from tuner.knobs import REGISTRY
from tuner.trial import CRASHED, LOST, TIMEOUT, TrialConfig, TrialResult

ROOM_POLL_S = 1.0  # how often a trial waiting for room on the cluster looks again
# Ray's own switch ("0": a new local node takes 127.0.0.1 as its address, so GCS, raylet and
# workers listen on loopback only); named for laptops, it holds on Linux as well
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_ENV = "RAY_AUTH_MODE"


def _local_ray_environment() -> str | None:
    """Before Ray is imported: the tuner's own local Ray listens on loopback only, keeps token
    authentication on, and runs trials at priority 0 (Ray nices its workers to 15). Returns a
    warning when an inherited setting was overruled."""
    os.environ.setdefault(LOOPBACK_ENV, "0")
    os.environ.setdefault("RAY_worker_niceness", "0")
    if os.environ.get(AUTH_ENV, "").strip().lower() == "disabled":
        os.environ[AUTH_ENV] = "token"
        return (f"warning: {AUTH_ENV}=disabled from the environment is not used: the tuner's own "
                "local Ray starts with token authentication (for a Ray without it, start one "
                "yourself and give --ray-address)")
    return None


def _absolute_pythonpath() -> None:
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if entries:
        os.environ["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in entries)


def lost_reason(error: Exception) -> str:
    """One short line for a trial lost with its node or worker: which node, from Ray's message."""
    text = " ".join(str(error).split())
    node = re.search(r"Node IP: ([^,\s]+), node ID: ([0-9a-f]+)", text)
    if node:
        return (f"its Ray node {node.group(1)} ({node.group(2)[:12]}) died or left the cluster "
                f"({type(error).__name__})")
    return f"its Ray worker or node was lost ({type(error).__name__}: {text[:160]})"


@dataclass(frozen=True)
class ClusterShape:
    """What the Ray cluster's nodes offer, for sizing trial requests so they fit on a node."""

    node_cpus: int  # the largest node's CPUs
    cpus_per_gpu: int  # a GPU's share of its node's CPUs (the smallest over GPU nodes)
    gpus: int  # GPUs in the whole cluster

    @classmethod
    def of(cls, nodes: list[dict[str, float]]) -> ClusterShape:
        gpu_nodes = [r for r in nodes if r.get("GPU", 0) >= 1]
        return cls(
            node_cpus=max((int(r.get("CPU", 0)) for r in nodes), default=1),
            cpus_per_gpu=min((int(r.get("CPU", 0) // r["GPU"]) for r in gpu_nodes), default=0),
            gpus=int(sum(r.get("GPU", 0) for r in nodes)),
        )

    def cpus_for(self, knobs: dict[str, Any]) -> int:
        """The trial's CPU request, from its own threads and workers, capped to fit one node;
        a GPU trial's to its GPU's share of a GPU node (a request sized for big CPU nodes would
        never be scheduled on a smaller GPU node, and one taking a whole 8-GPU node's CPUs
        would leave its other GPUs idle)."""
        node_cpus = max(self.cpus_per_gpu if gpus_for(knobs) else self.node_cpus, 1)
        wanted = sum(REGISTRY[name].cpus(value, node_cpus) for name, value in knobs.items())
        return max(1, min(wanted, node_cpus))


class RayExecutor(Executor):
    """Local Ray by default (`ray.init()`), or an existing cluster with `address`; `runtime_env`
    (Ray's) is how the cluster's workers get code the driver has and they lack."""

    def __init__(self, address: str | None = None,
                 runtime_env: dict[str, Any] | None = None,
                 say: Any = print) -> None:
        self.address = address
        self.runtime_env = runtime_env
        self.say = say
        self._given: list[Submitted] = []  # given to Ray, not yet collected
        self._owns_ray = False
        self._loopback = False  # the local Ray of its own, listening on loopback only
        self.nodes: list[Any] = []

    @property
    def shares_this_host(self) -> bool:
        ray = sys.modules.get("ray")  # not imported here: start() sets Ray's switches first
        return self.address is None and not (ray is not None and ray.is_initialized())

    @property
    def room(self) -> str:
        return "on the cluster" if self.address else "on this machine"

    def start(self) -> None:
        ray_loaded = sys.modules.get("ray")
        overruled = (_local_ray_environment() if not self.address and not (
            ray_loaded is not None and ray_loaded.is_initialized()) else None)
        import ray

        from tuner.node.supervisor import run_trial_process

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if self.address:
                cluster.check_address(self.address)
            _absolute_pythonpath()  # local workers inherit it, from another working directory
            if overruled:
                self.say(overruled)
            try:
                ray.init(address=self.address, runtime_env=self.runtime_env,
                         include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         configure_logging=True)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise cluster.connect_error(self.address, error) from None
        node_ip = ray.util.get_node_ip_address()
        self._loopback = self._owns_ray and not self.address and node_ip in ("127.0.0.1", "::1")
        if self._owns_ray and not self.address and not self._loopback:
            self.say(f"warning: the local Ray listens on {node_ip}, not only on loopback "
                     f"({LOOPBACK_ENV} was set to 1, or Ray was imported before the tuner set it)")
        self._remote = ray.remote(run_trial_process)
        # The node under a trial died or left (a stopped machine, a preempted instance), or
        # the supervisor process itself was killed: nothing the config did, so run it again.
        self._lost_errors = (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,
                             ray.exceptions.LocalRayletDiedError)
        alive = [node for node in ray.nodes() if node["Alive"]]
        self.nodes = cluster.check_nodes(ray, alive) if self.address else []
        self.cluster = ClusterShape.of([node["Resources"] for node in alive])
        self.node_count = len(alive)
        self.node_cpus = self.cluster.node_cpus
        self.cluster_gpus = self.cluster.gpus

    def describe(self) -> str:
        """The cluster in one line, for the search's opening lines."""
        gpus = f", {self.cluster_gpus} GPU(s)" if self.cluster_gpus else ""
        nodes = counted(self.node_count, "node")
        versions = sorted({node.tuner_version for node in self.nodes})
        tuner = (f"; tuner {versions[0]} on every node" if len(versions) == 1 else
                 f"; WARNING: the nodes run different tuner versions ({', '.join(versions)}): "
                 "install one everywhere, or results are not comparable" if versions else "")
        local = " (local, on loopback)" if self._loopback else ""
        return f"ray: {nodes}{local}, up to {self.node_cpus} CPUs per node{gpus}{tuner}"

    def submit(self, config: TrialConfig) -> Submitted:
        """Give the trial to Ray now if the cluster has room for it, else keep it waiting
        (`wait_any` gives it to Ray when room frees up). A trial held in Ray's own queue would
        count its wait against its time limit; one held here does not."""
        cpus = self.cluster.cpus_for(config.knobs)
        gpus = gpus_for(config.knobs)
        runtime_vars = tuple((self.runtime_env or {}).get("env_vars", {}) or ())
        config = dataclasses.replace(config, cpus=cpus, gpus=gpus,
                                     pass_env=tuple(dict.fromkeys(config.pass_env + runtime_vars)))
        item = Submitted(config=config, ref=None, cpus=cpus, started=0.0, gpus=gpus)
        self._dispatch_if_room([item])
        return item

    def _dispatch_if_room(self, items: list[Submitted]) -> None:
        """Hand waiting trials to Ray, oldest first, each one the cluster's free resources
        cover (one that can never fit, the cluster having shrunk, goes to Ray to say so)."""
        waiting = [item for item in items if item.waiting]
        if not waiting:
            return
        ray = self._ray
        total = ray.cluster_resources()
        # Ray's view of free resources trails a dispatch, so it may not show our latest trials
        # yet: free is the smaller of what it shows and what our own running trials leave
        view = ray.available_resources()
        free = {kind: min(view.get(kind, 0.0), total.get(kind, 0.0) - sum(
                    item.cpus if kind == "CPU" else item.gpus for item in self._given))
                for kind in ("CPU", "GPU")}
        for item in waiting:
            fits = free["CPU"] >= item.cpus and free["GPU"] >= item.gpus
            never = total.get("CPU", 0.0) < item.cpus or total.get("GPU", 0.0) < item.gpus
            if not (fits or never):
                continue  # a CPU trial need not wait behind a GPU trial waiting for its GPU
            self._dispatch(item)
            free["CPU"] -= item.cpus
            free["GPU"] -= item.gpus

    def _dispatch(self, item: Submitted) -> None:
        # SPREAD: trials side by side go to different nodes where there are several, so they
        # share no memory bandwidth or caches
        item.placement_key = f"tuner-placement:{uuid.uuid4().hex}"
        item.ref = self._remote.options(
            num_cpus=item.cpus, num_gpus=item.gpus, max_retries=0,
            scheduling_strategy="SPREAD").remote(item.config.to_json(), item.config.time_limit_s,
                                                 item.placement_key)
        item.started = time.monotonic()
        self._given.append(item)

    def wait_any(self, running: list[Submitted],
                 timeout_s: float) -> list[tuple[Submitted, TrialResult]]:
        """Results of the trials that finished within `timeout_s` (possibly none); waiting
        trials are given to Ray as room frees up."""
        ray = self._ray
        self._dispatch_if_room(running)
        if any(item.waiting for item in running):
            timeout_s = min(timeout_s, ROOM_POLL_S)
        given = [item for item in running if not item.waiting]
        if given:
            done, _ = ray.wait([item.ref for item in given], num_returns=1, timeout=timeout_s)
        else:
            time.sleep(timeout_s)
            done = []
        finished = []
        dead = self._dead_nodes() if len(done) < len(given) else {}
        for item in given:
            if item.ref in done:
                finished.append((item, self._collect(item)))
            elif dead and self._node_of(item) in dead:
                # Ray marked its node dead but has not failed the task (a node that hangs or
                # left the network closes no connection): lost, as if the node had died
                self._cancel(item)
                finished.append((item, TrialResult(status=LOST, reason=(
                    f"its Ray node {dead[item.node_id]} ({item.node_id[:12]}) stopped answering "
                    "and was marked dead"))))
            elif time.monotonic() - item.started > item.config.time_limit_s + 120:
                # the supervisor itself is lost (node died, Ray hung): give up on it
                self._cancel(item)
                finished.append((item, TrialResult(status=TIMEOUT, reason=(
                    "no answer from its Ray worker 120 s past the time limit; cancelled"))))
        for item, _ in finished:
            self._given.remove(item)
            self._forget(item)
        return finished

    def _dead_nodes(self) -> dict[str, str]:
        """Node id -> address of the nodes Ray has marked dead."""
        try:
            return {node["NodeID"]: node.get("NodeManagerAddress", "?")
                    for node in self._ray.nodes() if not node["Alive"]}
        except Exception:  # noqa: BLE001 - the head unreachable: nothing known to be dead
            return {}

    def _node_of(self, item: Submitted) -> str:
        """The node running the trial, as its supervisor announced it ("" before it did)."""
        if not item.node_id and item.placement_key:
            try:
                from ray.experimental import internal_kv

                found = internal_kv._internal_kv_get(item.placement_key)
            except Exception:  # noqa: BLE001 - unknown: the time limit decides
                found = None
            item.node_id = found.decode() if found else ""
        return item.node_id

    def progress(self, item: Submitted) -> str:
        """Where a running trial is ("timed step 3 of 5, 55 s a step"), as its supervisor last
        published it; "" before it did, or while it waits for room."""
        if item.waiting or not item.placement_key:
            return ""
        try:
            from ray.experimental import internal_kv

            found = internal_kv._internal_kv_get(pg.progress_key(item.placement_key))
        except Exception:  # noqa: BLE001 - a progress line is a convenience
            return ""
        return found.decode() if found else ""

    def _forget(self, item: Submitted) -> None:
        if item.placement_key:
            try:
                from ray.experimental import internal_kv

                internal_kv._internal_kv_del(item.placement_key)
                internal_kv._internal_kv_del(pg.progress_key(item.placement_key))
            except Exception:  # noqa: BLE001 - a stale key costs a few bytes
                pass

    def _cancel(self, item: Submitted) -> None:
        try:
            self._ray.cancel(item.ref, force=True)
        except Exception:  # noqa: BLE001 - its node is gone: nothing left to stop
            pass

    def _collect(self, item: Submitted) -> TrialResult:
        try:
            result = TrialResult.from_dict(self._ray.get(item.ref))
        except Exception as error:  # noqa: BLE001 - a lost worker is a failed trial
            first = (str(error).strip().splitlines() or [""])[0][:300]
            if isinstance(error, self._lost_errors):
                result = TrialResult(status=LOST, reason=lost_reason(error))
            else:
                result = TrialResult(status=CRASHED,
                                     reason=f"Ray task failed: {type(error).__name__}: {first}")
        result.info["cpus_requested"] = item.cpus
        result.info["gpus_requested"] = item.gpus
        return result

    def shutdown(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()
