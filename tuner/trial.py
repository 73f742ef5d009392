"""The plain, JSON-able data that crosses between the driver and a trial process.

Only these two records travel: the driver never sees a torch object and the worker never sees
an Optuna or MLflow one, so a trial can run on any Ray node without shared files or credentials.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

# Outcome of one trial. "ok" is the only one with measurements.
OK = "ok"
FAILED = "failed"          # the trial raised
OOM = "oom"                # ran out of memory (MemoryError, allocator failure, or killed)
TIMEOUT = "timeout"        # passed its time limit and was killed
CRASHED = "crashed"        # the process died without a result (signal, abort)
UNSUPPORTED = "unsupported"  # asked for a choice this worker cannot honour; skipped cheaply
PRUNED = "pruned"          # clearly slower than the best so far at screening: stopped early
LOST = "lost"              # its Ray node or worker died under it: not the config's fault, re-run
STATUSES = (OK, FAILED, OOM, TIMEOUT, CRASHED, UNSUPPORTED, PRUNED, LOST)


@dataclass(frozen=True)
class MeasureSettings:
    """How long to measure: by step count, bounded by time (a ResNet-50 step can take 50 s)."""

    warmup_steps: int = 1
    timed_steps: int = 5
    min_timed_steps: int = 3
    max_timed_s: float = 120.0
    # A round whose step-time cv is above max_cv is timed again, up to `remeasure` more rounds;
    # a trial still noisy after them is marked noisy and can never be reported best. A round
    # of 20+ steps (measured by time) is noisy only if its median's 95% interval is also wider
    # than max_median_error (relative): many spread steps still give a precise median.
    max_cv: float = 0.10
    max_median_error: float = 0.05
    remeasure: int = 2
    # Screening: after screen_s of timed steps, a trial slower than prune_below x the search's
    # best so far stops there (pruned) instead of timing on; 0 turns it off.
    screen_s: float = 0.0
    prune_below: float = 0.0
    # The user's job length in steps: job_samples_per_sec charges compile_s over it (the
    # objective for a short job, which compiling may slow down); None: not computed.
    job_steps: int | None = None
    # a drift sentinel (the baseline config measured again) off the baseline's first figure by
    # more than this fraction marks the trials since the previous sentinel as drifted
    drift_tolerance: float = 0.15


@dataclass(frozen=True)
class GuardSettings:
    """The accuracy guard's fixed experiment: steps on fixed data from a fixed seed."""

    run: bool = True
    steps: int = 5
    batch_size: int = 8
    seed: int = 0


@dataclass(frozen=True)
class WorkloadSpec:
    """What the trial process runs: a workload object (a built-in name or
    `package.module:factory`), or the user's own job (`job`: "function", `name` =
    `package.module:function`, called with `options`; "script", `name` = its absolute path, run
    as __main__ with `args`) whose loop `tuner.Tuned.steps` marks."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    job: str = ""  # "" (a workload object), "function" or "script"
    args: list[str] = field(default_factory=list)  # a script's command line
    scenario: str = "train"  # a job's: train (it reports its loss) or infer (its quality)


@dataclass(frozen=True)
class TrialConfig:
    """Everything a trial process needs, and nothing else."""

    study: str
    trial_number: int
    workload: WorkloadSpec
    knobs: dict[str, Any]
    measure: MeasureSettings
    guard: GuardSettings
    time_limit_s: float
    seed: int = 0
    memory_limit_mb: int | None = None  # None: a share of the node's memory (see executor)
    memory_share: int = 1  # trials that may run at once on a node: they split its memory
    cpus: int = 0  # cores the trial was given by Ray (its pinned core set's size)
    gpus: int = 0  # GPUs Ray gave it (it sees only those)
    exclusive_cores: bool = False  # trials run side by side: pin each to cores of its own
    cache_dir: str = ""  # where a workload may cache what it builds once (trained weights)
    stop_below: float = 0.0  # samples/s: at screening, slower than this stops the trial
    # when the supervisor kills the trial process (epoch seconds; set by the supervisor as it
    # starts the process, 0 outside one): the process plans its measurement to end before it
    deadline_epoch_s: float = 0.0
    # variables the trial process gets from its node beyond the allow-list (the space's
    # trial.pass_env and the runtime_env's env_vars)
    pass_env: tuple[str, ...] = ()
    # count the model's FLOPs and measure the device's matmul roof before timing (the first
    # trial on each device of a study: tuner.worker.headroom)
    headroom: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrialConfig:
        raw = json.loads(text)
        return cls(
            study=raw["study"],
            trial_number=raw["trial_number"],
            workload=WorkloadSpec(**raw["workload"]),
            knobs=raw["knobs"],
            measure=MeasureSettings(**raw["measure"]),
            guard=GuardSettings(**raw["guard"]),
            time_limit_s=raw["time_limit_s"],
            seed=raw.get("seed", 0),
            memory_limit_mb=raw.get("memory_limit_mb"),
            memory_share=raw.get("memory_share", 1),
            cpus=raw.get("cpus", 0),
            gpus=raw.get("gpus", 0),
            exclusive_cores=raw.get("exclusive_cores", False),
            cache_dir=raw.get("cache_dir", ""),
            stop_below=raw.get("stop_below", 0.0),
            deadline_epoch_s=raw.get("deadline_epoch_s", 0.0),
            pass_env=tuple(raw.get("pass_env", ())),
            headroom=raw.get("headroom", False),
        )


class ProgressInfo(TypedDict, total=False):
    """Where a trial killed at a limit (or dead) was: from its progress file."""

    phase: str
    timed_steps: int
    rounds: int
    warmup_times_s: list[float]
    build_s: float
    step_estimate_s: float
    elapsed_s: float
    startup_s: float  # interpreter and imports before the work
    batch_size: int
    partial: bool  # it had timed steps: its figures are kept, marked partial


class TrialInfo(TypedDict, total=False):
    """Where and how a trial ran: every field a trial process, its supervisor or the executor
    may report (the driver keeps the ones in tuner.driver.search.results.INFO_KEPT)."""

    # the trial process
    pid: int
    versions: dict[str, str]
    affinity: list[int]  # its cores, before OpenMP binds its threads
    niceness: int
    worker_cpus: int
    unsupported_choice: dict[str, Any]  # the choice this worker cannot run
    torch_threads: int
    interop_threads: int
    preloaded: list[str]
    memory_policy: str
    omp_env: dict[str, str]
    cpu_capability: str
    cpu_features: list[str]
    device: str
    gpu: str
    gpu_capability: list[int]
    scenario: str  # "train" or "infer"
    note: str  # why the kept round is short or noisy
    headroom: dict[str, Any]  # FLOPs per sample and the matmul roofs (tuner.worker.headroom)
    traceback: str
    # its supervisor on the node
    env_set: dict[str, str]
    memory_limit_mb: int
    memory_peak_mb: float
    pinned_cores: list[int]
    placement: str
    node_id: str
    hostname: str
    gpu_ids: list[str]
    started_at: float
    ended_at: float
    wall_s: float
    stderr_tail: str
    progress: ProgressInfo
    # the executor
    cpus_requested: int
    gpus_requested: int


@dataclass
class TrialResult:
    """What came back from a trial: measurements, or a failure with its reason."""

    status: str
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    step_times_s: list[float] = field(default_factory=list)
    guard_loss: float | None = None
    guard_losses: list[float] = field(default_factory=list)
    info: TrialInfo = field(default_factory=lambda: TrialInfo())

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrialResult:
        return cls(**raw)

    @classmethod
    def from_json(cls, text: str) -> TrialResult:
        return cls.from_dict(json.loads(text))
