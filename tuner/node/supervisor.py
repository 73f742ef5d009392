"""The node supervisor: runs one trial process to its end or its limit, and says what happened.

It starts `python -m tuner.worker` with an explicit environment (inherited thread and affinity
variables removed, the knobs' own set), at normal priority, with its deadline; caps its memory,
wakes once a second to check the memory the trial's processes really use (reading /proc, so no
core is stolen from the timed process), kills its whole process group at the time limit or the
memory cap, and turns whatever happened (result, exception, signal, hang, memory) into a
TrialResult: a killed trial's with the steps it had streamed to its progress file.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import metrics as mx
from tuner import progress as pg
from tuner.knobs import REGISTRY
from tuner.node import cores, placement
from tuner.node.memory import Watch, default_memory_limit_mb
from tuner.trial import CRASHED, FAILED, OOM, TIMEOUT, TrialConfig, TrialInfo, TrialResult

# Variables that silently change a trial if inherited (Ray itself exports OMP_NUM_THREADS).
INHERITED_VARS_REMOVED = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOMP_CPU_AFFINITY",
    "KMP_AFFINITY", "KMP_BLOCKTIME", "OMP_PROC_BIND", "OMP_PLACES", "LD_PRELOAD", "MALLOC_CONF",
    "CUDA_LAUNCH_BLOCKING", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
)
# What a trial process gets from its node's environment: what Python, torch, the compilers
# and the GPU stack read, and nothing else. Credentials (PGPASSWORD, RAY_AUTH_TOKEN, MLflow and
# cloud keys) never reach workload code; a workload that needs a variable names it in the
# space's trial.pass_env (or Ray's runtime_env env_vars).
ALLOWED_VARS = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "PWD", "PYTHONPATH", "PYTHONHOME", "PYTHONHASHSEED", "VIRTUAL_ENV", "CONDA_PREFIX",
    "LD_LIBRARY_PATH", "CC", "CXX", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "TORCH_HOME",
    "HF_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
})
ALLOWED_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_", "PYTORCH_", "TORCHINDUCTOR_",
                    "TRITON_")
STDERR_TAIL_CHARS = 2000
ADDRESS_SPACE_HEADROOM_MB = 2048  # torch maps ~0.8 GB of data segments before it allocates
POLL_S = 1.0


def trial_env(base: dict[str, str], knobs: dict[str, Any],
              pass_env: tuple[str, ...] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """The trial process's environment, and the part of it the tuner set explicitly: the
    allow-listed part of `base`, the variables named in `pass_env`, and the knobs' own."""
    env = {key: value for key, value in base.items()
           if (key in ALLOWED_VARS or key.startswith(ALLOWED_PREFIXES) or key in pass_env)
           and key not in INHERITED_VARS_REMOVED}
    explicit = knob_env(knobs)
    env.update(explicit)
    env["PYTHONUNBUFFERED"] = "1"
    return env, explicit


def knob_env(knobs: dict[str, Any]) -> dict[str, str]:
    """The variables the knobs set before the process starts (LD_PRELOAD values joined)."""
    explicit: dict[str, str] = {}
    for name, value in knobs.items():
        for key, setting in REGISTRY[name].process_env(value, knobs).items():
            if key == "LD_PRELOAD" and key in explicit:  # an allocator and an OpenMP runtime
                setting = f"{explicit[key]}:{setting}"
            explicit[key] = setting
    return explicit


@dataclass
class _Launch:
    """What the supervisor settles before the trial process starts."""

    config: TrialConfig
    time_limit_s: float
    env: dict[str, str]
    explicit: dict[str, str]  # the part of env the tuner set
    memory_limit_mb: int
    core_set: list[int] | None  # its own cores, when pinned
    prefix: list[str] = field(default_factory=list)  # numactl and the like, before python
    placement_notes: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)


def run_trial_process(config_json: str, time_limit_s: float,
                      placement_key: str = "") -> dict[str, Any]:
    """Run one trial process to completion or to its limit; always returns a result dict.
    `placement_key`: where to tell the driver which node runs it (Ray's key-value store), so
    a node that hangs or drops off the network, which Ray marks dead without failing the task,
    is noticed as this trial's."""
    if placement_key:
        placement.announce(placement_key)
    started = time.monotonic()
    launch = _prepare(TrialConfig.from_json(config_json), time_limit_s)
    with tempfile.TemporaryDirectory(prefix=f"tuner-trial-{launch.config.trial_number}-") as tmp:
        folder = Path(tmp)
        publish = placement.publisher(placement_key, folder / pg.FILE_NAME) if placement_key \
            else None
        watch = Watch(launch.memory_limit_mb, publish)
        try:
            returncode, timed_out, memory_mb = _run(launch, folder, watch)
        finally:
            if launch.core_set is not None:
                cores.release()
        result = _result_of(launch, folder, returncode, timed_out, memory_mb)
    result.info.update(_where_it_ran(launch, watch, started))
    return result.__dict__


def _prepare(config: TrialConfig, time_limit_s: float) -> _Launch:
    """The process's environment, memory cap, cores and launch prefix, from its knobs."""
    started_at = time.time()
    # the trial process plans its measurement to end before the moment it would be killed
    config = dataclasses.replace(config, deadline_epoch_s=started_at + time_limit_s)
    env, explicit = trial_env(dict(os.environ), config.knobs, config.pass_env)
    if config.gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # Ray leaves a GPU-less task every GPU: it may use none
    memory_limit_mb = config.memory_limit_mb or default_memory_limit_mb(config.memory_share)
    env["TUNER_MEMORY_LIMIT_MB"] = str(memory_limit_mb)
    pinned = config.exclusive_cores or any(REGISTRY[name].pins_cores(value)
                                           for name, value in config.knobs.items())
    launch = _Launch(config, time_limit_s, env, explicit, memory_limit_mb,
                     cores.claim(config.cpus or 1) if pinned else None, started_at=started_at)
    for name, value in config.knobs.items():
        command, note = REGISTRY[name].launch_prefix(value, launch.core_set)
        launch.prefix += command
        if note:
            launch.placement_notes.append(note)
    return launch


def _run(launch: _Launch, folder: Path, watch: Watch) -> tuple[int, bool, float | None]:
    """Start the trial process in `folder` and supervise it to its end."""
    config_path = folder / "config.json"
    config_path.write_text(launch.config.to_json(), encoding="utf-8")
    env = dict(launch.env)
    # torch.compile's on-disk caches would let one trial's compile speed up the next (and
    # hide compile cost from the user); each trial gets its own, deleted with the folder.
    env["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor-cache")
    env["TRITON_CACHE_DIR"] = str(folder / "triton-cache")
    with open(folder / "stderr.txt", "wb") as stderr:
        process = subprocess.Popen(
            [*launch.prefix, sys.executable, "-m", "tuner.worker", str(config_path),
             str(folder / "result.json")],
            env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes its children too
            preexec_fn=_child_setup(launch.memory_limit_mb, launch.core_set),
        )
        try:
            return _supervise(process, launch.time_limit_s, watch)
        finally:
            _kill_group(process)  # DataLoader workers or compile workers left behind


def _result_of(launch: _Launch, folder: Path, returncode: int, timed_out: bool,
               memory_mb: float | None) -> TrialResult:
    """The trial's own result, or, killed or dead, one made of what it had streamed."""
    stderr_tail = (folder / "stderr.txt").read_text(encoding="utf-8",
                                                    errors="replace")[-STDERR_TAIL_CHARS:]
    progress_path, result_path = folder / pg.FILE_NAME, folder / "result.json"
    if timed_out:
        result = killed_result(TIMEOUT, f"killed at its time limit of {launch.time_limit_s:g} s",
                               read_progress_now(progress_path), launch.started_at)
    elif memory_mb is not None:
        result = killed_result(OOM, (
            f"killed at its memory limit: {memory_mb:,.0f} MB in use (proportional set "
            f"size), limit {launch.memory_limit_mb:,} MB (trial.memory_mb in the space)"),
            read_progress_now(progress_path), launch.started_at)
    elif result_path.exists():
        result = TrialResult.from_json(result_path.read_text(encoding="utf-8"))
    else:
        # died by itself (a signal, the kernel's OOM killer): what it timed is kept too
        reason, last_words = _reason_of_death(returncode, stderr_tail)
        result = killed_result(_status_of_death(returncode), reason,
                               read_progress_now(progress_path), launch.started_at, last_words)
    result.info["stderr_tail"] = stderr_tail if not result.ok else ""
    return result


def _where_it_ran(launch: _Launch, watch: Watch, started: float) -> TrialInfo:
    return {
        "env_set": launch.explicit,
        "memory_limit_mb": launch.memory_limit_mb,
        # as the cap counted it, at 1-s looks: resident sizes, or proportional ones past the cap
        "memory_peak_mb": round(watch.peak_mb, 1),
        "pinned_cores": launch.core_set or [],
        "placement": "; ".join(launch.placement_notes),
        "node_id": placement.node_id(),
        "hostname": socket.gethostname(),
        "gpu_ids": placement.gpu_ids() if launch.config.gpus else [],
        "started_at": launch.started_at,
        "ended_at": time.time(),
        "wall_s": time.monotonic() - started,
    }


def _supervise(process: subprocess.Popen[bytes], time_limit_s: float,
               watch: Watch) -> tuple[int, bool, float | None]:
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
    if mx.SAMPLES_PER_SEC in metrics:
        kept = (f"; {len(steps)} timed step(s) kept: "
                f"{metrics[mx.SAMPLES_PER_SEC]:,.2f} samples/s "
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


def _load_prctl() -> Any:
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


