"""The typed search space: what a validated YAML file becomes. Every default lives here (or, for
what crosses to the trial process, in tuner.trial); the reader takes them from these classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner import metrics as mx
from tuner.knobs import active_values
from tuner.trial import GuardSettings, MeasureSettings, WorkloadSpec

SAMPLERS = ("tpe", "random")
STARTS = ("sweep", "sampler")  # after the baseline: a one-knob-at-a-time sweep, or the sampler
GUARD_MODES = ("relative", "absolute")
AUTO_CONFIRM, AUTO_CONFIRM_FROM = 2, 16  # budget.confirm: auto (see docs/benchmarks.md)
AUTO_SENTINEL = 8  # budget.sentinel_every: auto, from AUTO_CONFIRM_FROM trials


@dataclass(frozen=True)
class IntRange:
    """An integer knob searched over a range (inclusive bounds, as in Optuna)."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int) and self.low <= value <= self.high
            and (self.log or (value - self.low) % self.step == 0)
        )

    def size(self) -> int:
        return self.high - self.low + 1 if self.log else (self.high - self.low) // self.step + 1


@dataclass(frozen=True)
class KnobSpace:
    """The choices one knob may take in a study: a list, or an integer range."""

    name: str
    choices: tuple[Any, ...] | None = None
    int_range: IntRange | None = None

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        assert self.int_range is not None
        return self.int_range.contains(value)

    def size(self) -> int:
        return len(self.choices) if self.choices is not None else self.int_range.size()  # type: ignore[union-attr]

    def describe(self) -> str:
        if self.choices is not None:
            return str(list(self.choices))
        r = self.int_range
        assert r is not None
        return f"[{r.low}..{r.high}{', log' if r.log else f', step {r.step}'}]"


@dataclass(frozen=True)
class Budget:
    """When a search stops starting trials: after `trials` measurements or `timeout_s`,
    whichever comes first; `trials: null` (or --timeout without --trials): when the time is
    used, or the space exhausted."""

    trials: int | None = 12
    timeout_s: float = 1800.0
    # the budget's last trials re-measure the `confirm` best configs so far, in
    # `confirm_rounds` interleaved rounds (A B, B A, ...: tuner/driver/pairs.py); the best is
    # then reported from those confirming measurements only (one measurement of the winner is
    # biased up). None (auto): 2 configs for a budget of 16 trials or more, else none
    confirm: int | None = None
    confirm_rounds: int = 3
    # the drift sentinel (tuner/driver/search/sentinel.py): the baseline config measured again
    # after every `sentinel_every` trials, not counted in `trials`; None (auto): 8 for a budget
    # of 16 trials or more (or of time only), else none; 0: off
    sentinel_every: int | None = None

    def sentinel_interval(self, trials: int | None) -> int:
        if self.sentinel_every is not None:
            return self.sentinel_every
        return AUTO_SENTINEL if trials is None or trials >= AUTO_CONFIRM_FROM else 0

    def describe(self) -> str:
        if self.trials is None:
            return f"{self.timeout_s:g} s, no trial count"
        return f"{self.trials} trials / {self.timeout_s:g} s"

    def confirmation_rounds(self, trials: int | None, configs: int) -> int:
        """Rounds of the confirmation of `configs` configs: one for a single config (nothing
        to pair it with), else confirm_rounds, fewer when the budget cannot hold them beside
        the baseline."""
        if configs < 2:
            return 1
        if trials is None:
            return self.confirm_rounds
        return max(1, min(self.confirm_rounds, (trials - 1) // configs))

    def confirmations(self, trials: int | None) -> int:
        """Confirming trials at the end of a budget of `trials` (--trials may override it;
        None: a budget of time only, confirmed as its time runs out)."""
        if trials is None:
            return AUTO_CONFIRM if self.confirm is None else self.confirm
        if self.confirm is not None:
            return min(self.confirm, max(0, trials - 1))  # never all: the baseline is first
        return AUTO_CONFIRM if trials >= AUTO_CONFIRM_FROM else 0


@dataclass(frozen=True)
class TrialLimits:
    time_limit_s: float = 600.0
    max_concurrent: int = 1  # 1: each trial owns the machine, so timings are not disturbed
    memory_mb: int | None = None  # resident-memory cap per trial; None: the node's share
    heartbeat_s: int = 10  # a running trial's heartbeat in the study storage
    # environment variables a trial process gets from its node beyond the allow-list
    # (tuner.node.supervisor.ALLOWED_VARS): what the user's own workload reads, e.g. DATA_DIR
    pass_env: tuple[str, ...] = ()

    @property
    def grace_s(self) -> int:
        """Heartbeat silence after which a running trial's search is taken for dead."""
        return 3 * self.heartbeat_s


@dataclass(frozen=True)
class WorkerPrice:
    """What one kind of worker costs: the instance a trial's device stands for."""

    price_per_hour: float = 1.0
    instance: str = ""
    source: str = ""


@dataclass(frozen=True)
class Cost:
    """Prices per hour: one for every trial, or one per device (a CPU instance and a GPU
    instance) when the space compares devices."""

    price_per_hour: float = 1.0
    currency: str = "USD"
    instance: str = ""
    source: str = ""
    as_of: str = ""  # when the prices were read: on-demand prices move
    devices: dict[str, WorkerPrice] = field(default_factory=dict)

    def worker(self, device: str) -> WorkerPrice:
        if device in self.devices:
            return self.devices[device]
        return WorkerPrice(self.price_per_hour, self.instance, self.source)

    def price_for(self, device: str) -> float:
        return self.worker(device).price_per_hour

    def describe(self, devices: tuple[str, ...]) -> str:
        """The prices a search uses, with what they stand for and when they were read."""
        parts = []
        for device in devices:
            worker = self.worker(device)
            instance = f" ({worker.instance})" if worker.instance else ""
            parts.append(f"{device} {worker.price_per_hour:g} {self.currency}/h{instance}")
        return ", ".join(parts) + (f", as of {self.as_of}" if self.as_of else "")


@dataclass(frozen=True)
class Nightly:
    """`tuner nightly`: how much slower tonight's champion may be before it is a regression
    (a fraction of last night's champion's speed-up over the baseline), and how many of the
    best earlier configs seed tonight's search."""

    threshold: float = 0.10
    warm_start: int = 3


@dataclass(frozen=True)
class Guard:
    tolerance: float = 0.02
    mode: str = "relative"  # or "absolute"
    steps: int = GuardSettings.steps  # the experiment's own defaults: written once, there
    batch_size: int = GuardSettings.batch_size
    seed: int = GuardSettings.seed

    def settings(self, run: bool) -> GuardSettings:
        return GuardSettings(run=run, steps=self.steps, batch_size=self.batch_size, seed=self.seed)


@dataclass(frozen=True)
class Sampler:
    name: str = "tpe"
    seed: int | None = 0
    startup_trials: int = 5
    start: str = "sweep"  # see tuner/strategy.py
    priors: bool = True  # known-good configs for the baseline's hardware next (tuner/priors.py)
    # the best configs of other studies of this workload in the storage, the most similar
    # machines first (tuner/driver/transfer.py): how many to queue after the priors; 0: none
    transfer: int = 2


@dataclass(frozen=True)
class Space:
    """One validated search-space file: one study."""

    source: str
    study: str
    workload: WorkloadSpec
    knobs: dict[str, KnobSpace]
    baseline: dict[str, Any]
    description: str = ""
    objectives: tuple[str, ...] = (mx.SAMPLES_PER_SEC,)  # two: a Pareto front
    budget: Budget = field(default_factory=Budget)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    trial: TrialLimits = field(default_factory=TrialLimits)
    cost: Cost = field(default_factory=Cost)
    guard: Guard = field(default_factory=Guard)
    sampler: Sampler = field(default_factory=Sampler)
    storage: str | None = None
    tracking_uri: str | None = None
    try_first: tuple[dict[str, Any], ...] = ()  # configs to try right after the baseline
    nightly: Nightly = field(default_factory=Nightly)

    @property
    def max_cv(self) -> float:
        return self.measure.max_cv

    @property
    def objective(self) -> str:
        """The objective tables rank by (the first, when there are two)."""
        return self.objectives[0]

    def devices(self) -> tuple[str, ...]:
        """The devices this space's trials may run on."""
        return _devices(self.knobs, self.baseline)

    def size(self) -> int:
        """Number of distinct configs in the space (conditional knobs counted as if always on)."""
        return math.prod(knob.size() for knob in self.knobs.values())

    def full_config(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """Knob values of a trial: the baseline, overridden by what was sampled, active only."""
        return active_values({**self.baseline, **sampled})

    def searched(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The part of a config this space searches: a trial's Optuna params."""
        return {name: value for name, value in config.items() if name in self.knobs}


def powers_of_two(low: int, high: int) -> tuple[int, ...]:
    """The ends of a range and the powers of two between: a batch size's log range."""
    values = {low, high}
    power = 1
    while power < high:
        if power > low:
            values.add(power)
        power *= 2
    return tuple(sorted(values))


def _devices(knobs: dict[str, KnobSpace], baseline: dict[str, Any]) -> tuple[str, ...]:
    knob = knobs.get("device")
    if knob is not None and knob.choices is not None:
        return tuple(knob.choices)
    return (str(baseline.get("device", "cpu")),)


