"""Runs trials as Ray tasks, each in a fresh trial process with its own environment and limit.

The Ray task is a thin supervisor: it starts `python -m tuner.worker` with an explicit
environment (inherited thread and affinity variables removed, the knobs' own set), at normal
priority, with its deadline; caps its memory, wakes once a second to check the memory the
trial's processes really use (reading /proc, so no core is stolen from the timed process),
kills its whole process group at the time limit or the memory cap, and turns whatever happened
(result, exception, signal, hang, memory) into a TrialResult: a killed trial's with the steps it
had streamed to its progress file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import cluster, cores
from tuner import progress as pg
from tuner.knobs import REGISTRY
from tuner.trial import CRASHED, FAILED, LOST, OOM, TIMEOUT, TrialConfig, TrialResult

# Variables that silently change a trial if inherited (Ray itself exports OMP_NUM_THREADS).
INHERITED_VARS_REMOVED = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOMP_CPU_AFFINITY",
    "KMP_AFFINITY", "KMP_BLOCKTIME", "OMP_PROC_BIND", "OMP_PLACES", "LD_PRELOAD", "MALLOC_CONF",
    "CUDA_LAUNCH_BLOCKING", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
)
STDERR_TAIL_CHARS = 2000
MEMORY_SHARE_OF_NODE = 0.8  # the default cap: this much of the node's memory, split by trials
ADDRESS_SPACE_HEADROOM_MB = 2048  # torch maps ~0.8 GB of data segments before it allocates
POLL_S = 1.0
PROGRESS_EVERY_S = 5.0  # how often a running trial's phase is published for the driver's line
ROOM_POLL_S = 1.0  # how often a trial waiting for room on the cluster looks again


def trial_env(base: dict[str, str], knobs: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The trial process's environment, and the part of it the tuner set explicitly."""
    env = {key: value for key, value in base.items() if key not in INHERITED_VARS_REMOVED}
    explicit: dict[str, str] = {}
    for name, value in knobs.items():
        for key, setting in REGISTRY[name].process_env(value, knobs).items():
            if key == "LD_PRELOAD" and key in explicit:  # an allocator and an OpenMP runtime
                setting = f"{explicit[key]}:{setting}"
            explicit[key] = setting
    env.update(explicit)
    env["PYTHONUNBUFFERED"] = "1"
    return env, explicit


def run_trial_process(config_json: str, time_limit_s: float,
                      placement_key: str = "") -> dict[str, Any]:
    """Run one trial process to completion or to its limit; always returns a result dict.
    `placement_key`: where to tell the driver which node runs it (Ray's key-value store), so
    a node that hangs or drops off the network, which Ray marks dead without failing the task,
    is noticed as this trial's."""
    config = TrialConfig.from_json(config_json)
    if placement_key:
        _announce(placement_key)
    started = time.monotonic()
    started_at = time.time()
    # the trial process plans its measurement to end before the moment it would be killed
    config = dataclasses.replace(config, deadline_epoch_s=started_at + time_limit_s)
    env, explicit = trial_env(dict(os.environ), config.knobs)
    if config.gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # Ray leaves a GPU-less task every GPU: it may use none
    memory_limit_mb = config.memory_limit_mb or default_memory_limit_mb(config.memory_share)
    env["TUNER_MEMORY_LIMIT_MB"] = str(memory_limit_mb)
    pinned = config.exclusive_cores or any(REGISTRY[name].pins_cores(value)
                                           for name, value in config.knobs.items())
    core_set = cores.claim(config.cpus or 1) if pinned else None
    prefix: list[str] = []
    placement_notes = []
    for name, value in config.knobs.items():
        command, note = REGISTRY[name].launch_prefix(value, core_set)
        prefix += command
        if note:
            placement_notes.append(note)
    with tempfile.TemporaryDirectory(prefix=f"tuner-trial-{config.trial_number}-") as folder:
        config_path = Path(folder, "config.json")
        result_path = Path(folder, "result.json")
        stderr_path = Path(folder, "stderr.txt")
        progress_path = Path(folder, pg.FILE_NAME)
        config_path.write_text(config.to_json(), encoding="utf-8")
        # torch.compile's on-disk caches would let one trial's compile speed up the next (and
        # hide compile cost from the user); each trial gets its own, deleted with the folder.
        env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder, "inductor-cache"))
        env["TRITON_CACHE_DIR"] = str(Path(folder, "triton-cache"))
        watch = _Watch(memory_limit_mb,
                       _publisher(placement_key, progress_path) if placement_key else None)
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "tuner.worker", str(config_path),
                 str(result_path)],
                env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill takes its children too
                preexec_fn=_child_setup(memory_limit_mb, core_set),  # noqa: PLW1509 - syscalls only
            )
            try:
                returncode, timed_out, memory_mb = _supervise(process, time_limit_s, watch)
            finally:
                _kill_group(process)  # DataLoader workers or compile workers left behind
                if core_set is not None:
                    cores.release()
        stderr_tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-STDERR_TAIL_CHARS:]
        if timed_out:
            result = killed_result(TIMEOUT, f"killed at its time limit of {time_limit_s:g} s",
                                   read_progress_now(progress_path), started_at)
        elif memory_mb is not None:
            result = killed_result(OOM, (
                f"killed at its memory limit: {memory_mb:,.0f} MB in use (proportional set "
                f"size), limit {memory_limit_mb:,} MB (trial.memory_mb in the space)"),
                read_progress_now(progress_path), started_at)
        elif result_path.exists():
            result = TrialResult.from_json(result_path.read_text(encoding="utf-8"))
        else:
            # died by itself (a signal, the kernel's OOM killer): what it timed is kept too
            reason, last_words = _reason_of_death(returncode, stderr_tail)
            result = killed_result(_status_of_death(returncode), reason,
                                   read_progress_now(progress_path), started_at, last_words)
    result.info.update({
        "env_set": explicit,
        "memory_limit_mb": memory_limit_mb,
        # as the cap counted it, at 1-s looks: resident sizes, or proportional ones past the cap
        "memory_peak_mb": round(watch.peak_mb, 1),
        "pinned_cores": core_set or [],
        "placement": "; ".join(placement_notes),
        "node_id": _node_id(),
        "hostname": socket.gethostname(),
        "gpu_ids": _gpu_ids() if config.gpus else [],
        "started_at": started_at,
        "ended_at": time.time(),
        "wall_s": time.monotonic() - started,
        "stderr_tail": stderr_tail[-800:] if not result.ok else "",
    })
    return result.__dict__


def default_memory_limit_mb(share: int) -> int:
    """A share of this node's physical memory, so trials that run at once cannot starve it."""
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    return max(256, int(total_mb * MEMORY_SHARE_OF_NODE / max(1, share)))


@dataclass
class _Watch:
    """What the supervisor checks once a second besides the clock: the memory the trial's
    processes really use (and its peak), and its phase for the driver (every few seconds)."""

    memory_limit_mb: int
    publish: Any = None
    peak_mb: float = 0.0
    published: float = 0.0

    def over_memory(self, pgid: int) -> float | None:
        """MB in use when past the cap, else None. Resident sizes first (a read of /proc/PID/
        stat: well under a millisecond); only when their sum passes the cap, the proportional
        set sizes that decide (smaps_rollup walks the page tables: 17 ms for a 2.5 GB trial
        here, too dear to pay every second beside a timed process)."""
        pids = _group_pids(pgid)
        used_mb = sum(_resident_kb(pid) for pid in pids) / 1024
        if used_mb > self.memory_limit_mb:
            used_mb = sum(_proportional_kb(pid) for pid in pids) / 1024
        self.peak_mb = max(self.peak_mb, used_mb)
        return used_mb if used_mb > self.memory_limit_mb else None

    def maybe_publish(self) -> None:
        if self.publish is not None and time.monotonic() - self.published >= PROGRESS_EVERY_S:
            self.published = time.monotonic()
            self.publish()


def _supervise(process: subprocess.Popen[bytes], time_limit_s: float,
               watch: _Watch) -> tuple[int, bool, float | None]:
    """Wait for the trial; kill its group at the time limit or when the memory it really uses
    (all its processes: DataLoader workers too) passes the cap. Returns (returncode, timed out,
    MB in use when killed for memory)."""
    deadline = time.monotonic() + time_limit_s
    while True:
        try:
            return process.wait(timeout=max(0.0, min(POLL_S, deadline - time.monotonic()))), \
                False, None
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            _kill_group(process)
            return process.wait(), True, None
        used_mb = watch.over_memory(process.pid)
        if used_mb is not None:
            _kill_group(process)
            return process.wait(), False, used_mb
        watch.maybe_publish()


def group_memory_mb(pgid: int) -> float:
    """Memory a process group really uses: the sum of its processes' proportional set sizes
    (/proc/PID/smaps_rollup), where a page shared by N processes counts 1/N in each. Summed
    resident sizes count memory shared with forked DataLoader workers once per worker (a 400 MB
    trial with 2 idle workers read as 1.2 GB)."""
    return sum(_proportional_kb(pid) for pid in _group_pids(pgid)) / 1024


def _proportional_kb(pid: int) -> float:
    """A process's proportional set size; its resident size where smaps_rollup is unreadable
    (kernels before 4.14)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _resident_kb(pid)


def group_resident_mb(pgid: int) -> float:
    """Summed resident memory of a process group (what the cap used to count), for comparison."""
    return sum(_resident_kb(pid) for pid in _group_pids(pgid)) / 1024


def _group_pids(pgid: int) -> list[int]:
    pids = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return pids
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 21 and int(fields[2]) == pgid:
            pids.append(int(name))
    return pids


def _resident_kb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


def read_progress_now(path: Path) -> tuple[pg.Progress | None, float]:
    return pg.read_progress(path), time.time()


def killed_result(status: str, reason: str, seen: tuple[pg.Progress | None, float],
                  process_started_at: float, last_words: str = "") -> TrialResult:
    """A trial killed at a limit (or dead by a signal), with what it had measured: the steps
    it timed (figures from them, marked partial), and where it was, so a user reads why and
    the search can size a longer limit from it. The status stays the limit's (or the death's);
    `last_words`, the process's last stderr line, ends the reason."""
    progress, now = seen
    if progress is None:
        return TrialResult(status=status, reason=reason + last_words)
    steps = progress.kept_round()
    metrics = pg.partial_metrics(progress)
    kept = ""
    if "samples_per_sec" in metrics:
        kept = (f"; {len(steps)} timed step(s) kept: {metrics['samples_per_sec']:,.2f} samples/s "
                "(partial)")
    return TrialResult(
        status=status, reason=f"{reason}, in {progress.describe(now)}{kept}{last_words}",
        metrics=metrics, step_times_s=steps,
        info={"progress": {
            "phase": progress.phase, "timed_steps": progress.timed_steps,
            "rounds": len(progress.rounds), "warmup_times_s": progress.warmup_times_s,
            "build_s": progress.build_s, "step_estimate_s": progress.step_estimate_s(now),
            "elapsed_s": now - process_started_at,
            # interpreter and torch imports before the work: part of what a limit must cover
            "startup_s": max(0.0, progress.started_at - process_started_at),
            "batch_size": progress.batch_size, "partial": bool(steps)}})


def _publisher(placement_key: str, progress_path: Path) -> Any:
    """Publish the trial's phase where the driver reads it (Ray's key-value store)."""
    def publish() -> None:
        progress = pg.read_progress(progress_path)
        if progress is None:
            return
        try:
            from ray.experimental import internal_kv

            internal_kv._internal_kv_put(f"{placement_key}:progress",
                                         progress.describe(time.time()).encode(), overwrite=True)
        except Exception:  # noqa: BLE001, S110 - a progress line is a convenience
            pass

    return publish


def _load_prctl() -> object | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: trials are still killed by process group on every normal path


_PRCTL = _load_prctl()  # resolved here: the forked child must not import or take locks


def _child_setup(memory_limit_mb: int, core_set: list[int] | None) -> Any:
    """What the child runs before exec: SIGKILL it if its supervisor dies (Ctrl-C,
    ray.shutdown, a lost node), so no trial outlives its search; pin it to its own cores if it
    has some (its threads and DataLoader workers inherit the mask); and a hard cap on its data
    segment, above the resident-memory cap, so one huge allocation fails at once instead of
    taking the host down between two checks."""
    data_limit = (memory_limit_mb + ADDRESS_SPACE_HEADROOM_MB) * 2**20

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        try:  # Ray runs its workers niced (worker_niceness): the timed process must not be
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except OSError:
            pass  # not permitted (not root): the trial records the niceness it ran at
        if core_set:
            os.sched_setaffinity(0, core_set)
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))
        except (ValueError, OSError):
            pass  # a lower hard limit is already set: keep it

    return setup


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _status_of_death(returncode: int) -> str:
    if returncode == -signal.SIGKILL:
        return OOM  # nobody but the kernel's OOM killer sends SIGKILL before our time limit
    return CRASHED if returncode < 0 else FAILED


def _reason_of_death(returncode: int, stderr_tail: str) -> tuple[str, str]:
    """Why a trial process died without a result, and its last words (stderr's last line)."""
    last_line = next((line for line in reversed(stderr_tail.splitlines()) if line.strip()), "")
    words = f": {last_line[:200]}" if last_line else ""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (likely out of memory)" if returncode == -signal.SIGKILL else ""
        return f"trial process killed by {name}{hint}", words
    return f"trial process exited with code {returncode} without a result", words


def _node_id() -> str:
    try:
        import ray

        # is_initialized first: asking for the context outside Ray would start a Ray
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside Ray (tests call run_trial_process directly)
        return ""


def _announce(placement_key: str) -> None:
    try:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(placement_key, _node_id().encode(), overwrite=True)
    except Exception:  # noqa: BLE001, S110 - without it, a hung node is found by the time limit
        pass


def _gpu_ids() -> list[str]:
    """The GPUs Ray assigned to this task (what CUDA_VISIBLE_DEVICES holds in the trial)."""
    try:
        import ray

        if not ray.is_initialized():
            return []
        return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    except Exception:  # noqa: BLE001 - outside Ray (tests call run_trial_process directly)
        return []


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


def gpus_for(knobs: dict[str, Any]) -> int:
    """The trial's GPU request (one for a CUDA trial)."""
    return max((REGISTRY[name].gpus(value) for name, value in knobs.items()), default=0)


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


def unschedulable(knobs: dict[str, Any], gpus_wanted: int,
                  cluster_gpus: int) -> tuple[dict[str, Any], str] | None:
    if gpus_wanted and cluster_gpus < gpus_wanted:
        device = {"device": knobs.get("device", "cuda")}
        return device, (f"device={device['device']}: the Ray cluster has no GPU (no node "
                        "declares one); run on a cluster with GPU nodes, or search device: [cpu]")
    return None


@dataclass
class Submitted:
    """A trial handed to the executor: waiting for room on the cluster (`ref` None), or given
    to Ray at `started`."""

    config: TrialConfig
    ref: Any
    cpus: int
    started: float
    gpus: int = 0
    placement_key: str = ""  # where its supervisor says which node it runs on
    node_id: str = ""  # that node, once read

    @property
    def waiting(self) -> bool:
        return self.ref is None


class RayExecutor:
    """Local Ray by default (`ray.init()`), or an existing cluster with `address`; `runtime_env`
    (Ray's) is how the cluster's workers get code the driver has and they lack."""

    def __init__(self, address: str | None = None,
                 runtime_env: dict[str, Any] | None = None) -> None:
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if address:
                cluster.check_address(address)
            _absolute_pythonpath()  # local workers inherit it, from another working directory
            if not address:  # Ray nices its workers (15); a trial measures at normal priority
                os.environ.setdefault("RAY_worker_niceness", "0")
            try:
                ray.init(address=address, runtime_env=runtime_env, include_dashboard=False,
                         log_to_driver=False, logging_level="ERROR", configure_logging=True)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise cluster.connect_error(address, error) from None
        self._remote = ray.remote(run_trial_process)
        # The node under a trial died or left (a stopped machine, a preempted instance), or
        # the supervisor process itself was killed: nothing the config did, so run it again.
        self._lost_errors = (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,
                             ray.exceptions.LocalRayletDiedError)
        self._given: list[Submitted] = []  # given to Ray, not yet collected
        alive = [node for node in ray.nodes() if node["Alive"]]
        self.nodes = cluster.check_nodes(ray, alive) if address else []
        self.cluster = ClusterShape.of([node["Resources"] for node in alive])
        self.node_count = len(alive)
        self.node_cpus = self.cluster.node_cpus
        self.cluster_gpus = self.cluster.gpus

    def describe(self) -> str:
        """The cluster in one line, for the search's opening lines."""
        gpus = f", {self.cluster_gpus} GPU(s)" if self.cluster_gpus else ""
        nodes = f"{self.node_count} node{'s' if self.node_count != 1 else ''}"
        versions = sorted({node.tuner_version for node in self.nodes})
        tuner = (f"; tuner {versions[0]} on every node" if len(versions) == 1 else
                 f"; WARNING: the nodes run different tuner versions ({', '.join(versions)}): "
                 "install one everywhere, or results are not comparable" if versions else "")
        return f"{nodes}, up to {self.node_cpus} CPUs per node{gpus}{tuner}"

    def unschedulable(self, knobs: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        """(the choice, why) when no node of this Ray cluster could ever run the trial: Ray
        would keep it pending forever instead of failing it."""
        return unschedulable(knobs, gpus_for(knobs), self.cluster_gpus)

    def submit(self, config: TrialConfig) -> Submitted:
        """Give the trial to Ray now if the cluster has room for it, else keep it waiting
        (`wait_any` gives it to Ray when room frees up). A trial held in Ray's own queue would
        count its wait against its time limit; one held here does not."""
        cpus = self.cluster.cpus_for(config.knobs)
        gpus = gpus_for(config.knobs)
        config = dataclasses.replace(config, cpus=cpus, gpus=gpus)
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

    def wait_any(self, running: list[Submitted], timeout_s: float) -> list[tuple[Submitted, TrialResult]]:
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

            found = internal_kv._internal_kv_get(f"{item.placement_key}:progress")
        except Exception:  # noqa: BLE001 - a progress line is a convenience
            return ""
        return found.decode() if found else ""

    def _forget(self, item: Submitted) -> None:
        if item.placement_key:
            try:
                from ray.experimental import internal_kv

                internal_kv._internal_kv_del(item.placement_key)
                internal_kv._internal_kv_del(f"{item.placement_key}:progress")
            except Exception:  # noqa: BLE001, S110 - a stale key costs a few bytes
                pass

    def _cancel(self, item: Submitted) -> None:
        try:
            self._ray.cancel(item.ref, force=True)
        except Exception:  # noqa: BLE001, S110 - its node is gone: nothing left to stop
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
            self._ray.shutdown()
