"""A search-space YAML file, validated into typed objects before anything is created.

Every error names the file, the field and what is allowed, so a bad file costs the user one
line of output and nothing on disk.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import SpaceError, show
from tuner.knobs import REGISTRY, active_values
from tuner.trial import GuardSettings, MeasureSettings, WorkloadSpec
from tuner.workloads.registry import BUILTIN_WORKLOADS

SECTIONS = (
    "study", "description", "workload", "objective", "knobs", "baseline", "budget", "measure",
    "trial", "cost", "guard", "sampler", "storage", "tracking_uri", "try_first", "nightly",
)
OBJECTIVES = ("samples_per_sec", "samples_per_dollar")
SAMPLERS = ("tpe", "random")
STARTS = ("sweep", "sampler")
AUTO_CONFIRM, AUTO_CONFIRM_FROM = 2, 16  # budget.confirm: auto (see docs/benchmarks.md)  # after the baseline: a one-knob-at-a-time sweep, or the sampler


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
    trials: int = 12
    timeout_s: float = 1800.0
    # the last `confirm` trials re-measure the best configs so far; the best is then reported
    # from those confirming measurements only (one measurement of the winner is biased up).
    # None (auto): 2 for a budget of 16 trials or more, else none (small budgets need them all)
    confirm: int | None = None

    def confirmations(self, trials: int) -> int:
        """Confirming trials at the end of a budget of `trials` (--trials may override it)."""
        if self.confirm is not None:
            return min(self.confirm, max(0, trials - 1))  # never all: the baseline is first
        return AUTO_CONFIRM if trials >= AUTO_CONFIRM_FROM else 0


@dataclass(frozen=True)
class TrialLimits:
    time_limit_s: float = 600.0
    max_concurrent: int = 1  # 1: each trial owns the machine, so timings are not disturbed
    memory_mb: int | None = None  # resident-memory cap per trial; None: the node's share
    heartbeat_s: int = 10  # a running trial's heartbeat in the study storage

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
    steps: int = 5
    batch_size: int = 8
    seed: int = 0

    def settings(self, run: bool) -> GuardSettings:
        return GuardSettings(run=run, steps=self.steps, batch_size=self.batch_size, seed=self.seed)


@dataclass(frozen=True)
class Sampler:
    name: str = "tpe"
    seed: int | None = 0
    startup_trials: int = 5
    start: str = "sweep"  # see tuner/strategy.py
    priors: bool = True  # known-good configs for the baseline's hardware next (tuner/priors.py)


@dataclass(frozen=True)
class Space:
    """One validated search-space file: one study."""

    source: str
    study: str
    workload: WorkloadSpec
    knobs: dict[str, KnobSpace]
    baseline: dict[str, Any]
    description: str = ""
    objectives: tuple[str, ...] = ("samples_per_sec",)  # two: a Pareto front
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


def load_space(path: str | Path, overrides: list[str] | None = None) -> Space:
    """Read and validate a space file; raise SpaceError (one line) on anything wrong."""
    source = str(path)
    file = Path(path)
    if not file.is_file():
        raise SpaceError(source, "", "no such file (give the path of a search-space YAML file)")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpaceError(source, "", f"cannot read file: {error}") from None
    return parse_space(text, source=source, default_study=file.stem, overrides=overrides)


def parse_space(
    text: str, *, source: str = "<space>", default_study: str = "study",
    overrides: list[str] | None = None,
) -> Space:
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise SpaceError(source, "", "YAML nested too deeply to be a search space") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise SpaceError(source, "", f"YAML syntax error{where}: {problem}") from None
    if raw is None:
        raise SpaceError(source, "", "file is empty; expected a mapping with at least "
                         "'workload' and 'knobs' sections (see search_spaces/cpu_train.yaml)")
    if not isinstance(raw, dict):
        raise SpaceError(source, "", f"expected a mapping of sections at the top level, "
                         f"got {_type_name(raw)}")
    for override in overrides or []:
        _apply_override(raw, override, source)
    return _Reader(source).space(raw, default_study)


def _apply_override(raw: dict[str, Any], override: str, source: str) -> None:
    """`--set a.b.c=VALUE`: VALUE is read as YAML, so numbers and lists keep their types."""
    key, sep, value_text = override.partition("=")
    if not sep or not key.strip():
        raise SpaceError(source, "--set", f"expected KEY=VALUE (e.g. budget.trials=4), "
                         f"got {show(override)}")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        raise SpaceError(source, f"--set {key}", f"value {show(value_text)} is not valid YAML") from None
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if node is raw and part == "workload" and isinstance(child, str):
            child = node[part] = {"name": child}  # `workload: NAME` shorthand
        if not isinstance(child, dict):
            raise SpaceError(source, f"--set {key}", f"'{part}' is not a section")
        node = child
    node[parts[-1]] = value


OPTIONS_MAX_ITEMS = 10_000


def _plain_size(value: Any, limit: int) -> int:
    """How many values a YAML structure holds with its aliases expanded, counting no further
    than just past `limit` (a billion-laughs file must cost microseconds, not memory)."""
    count = 0
    stack = [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(item.keys())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _module_exists(dotted: str) -> bool:
    """Whether `package.module` can be found, without importing anything (importing a user's
    package to check a name would run its code, with whatever side effects it has)."""
    from importlib.machinery import PathFinder

    parts = dotted.split(".")
    if not all(part.isidentifier() for part in parts):
        return False
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name imports nothing
        for part in parts[1:]:
            if spec is None or not spec.submodule_search_locations:
                return False
            spec = PathFinder.find_spec(part, list(spec.submodule_search_locations))
    except (ImportError, ValueError, OSError):
        return False
    return spec is not None


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


class _Reader:
    """Reads typed fields from the raw YAML, raising SpaceError with the field's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field_path: str, message: str) -> SpaceError:
        return SpaceError(self.source, field_path, message)

    def mapping(self, raw: Any, field_path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(field_path, f"must be a mapping, got {_type_name(raw)}")
        for key in raw:
            if key not in allowed:
                what = "section" if not field_path else "field"
                plain = (key if isinstance(key, str) and key.isprintable() and len(key) <= 60
                         else show(key))
                name = f"{field_path}.{plain}" if field_path else plain
                raise self.fail(name, f"unknown {what}; allowed: {', '.join(allowed)}")
        return raw

    def integer(self, raw: Any, field_path: str, low: int, high: int) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.fail(field_path, f"must be an integer from {low} to {high}, "
                            f"got {_type_name(raw)} {show(raw)}")
        if not low <= raw <= high:
            raise self.fail(field_path, f"must be from {low} to {high}, got {raw}")
        return raw

    def number(self, raw: Any, field_path: str, low: float, high: float) -> float:
        if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) > 10**300:
            raise self.fail(field_path, f"must be from {low:g} to {high:g}, got a {len(str(raw))}"
                            "-digit number")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise self.fail(field_path, f"must be a number from {low:g} to {high:g}, "
                            f"got {_type_name(raw)} {show(raw)}")
        if not low <= raw <= high:
            raise self.fail(field_path, f"must be from {low:g} to {high:g}, got {raw:g}")
        return float(raw)

    def boolean(self, raw: Any, field_path: str) -> bool:
        if not isinstance(raw, bool):
            raise self.fail(field_path, f"must be true or false, got {_type_name(raw)} "
                            f"{show(raw)}")
        return raw

    def string(self, raw: Any, field_path: str, allowed: tuple[str, ...] | None = None) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail(field_path, f"must be a non-empty string, got {_type_name(raw)}")
        if allowed is not None and raw not in allowed:
            raise self.fail(field_path, f"must be one of {', '.join(allowed)}; got {show(raw)}")
        return raw

    def space(self, raw: dict[str, Any], default_study: str) -> Space:
        self.mapping(raw, "", SECTIONS)
        study = self.string(raw.get("study", default_study), "study")
        if not all(c.isalnum() or c in "-_." for c in study):
            raise self.fail("study", f"use letters, digits, '-', '_' or '.', got {show(study)}")
        if "knobs" not in raw:
            raise self.fail("knobs", "missing section; list the knobs to search, e.g. "
                            "knobs: {batch_size: [16, 32, 64]}")
        knobs = self.knobs(raw["knobs"])
        baseline = self.baseline(raw.get("baseline"), knobs)
        measure = self.measure(raw.get("measure"))
        guard_raw = self.mapping(raw.get("guard"), "guard",
                                 ("tolerance", "mode", "steps", "batch_size", "seed"))
        devices = _devices(knobs, baseline)
        return Space(
            source=self.source,
            study=study,
            description=self.optional_string(raw.get("description"), "description") or "",
            workload=self.workload(raw.get("workload")),
            objectives=self.objectives(raw.get("objective", "samples_per_sec")),
            knobs=knobs,
            baseline=baseline,
            budget=self.budget(raw.get("budget")),
            measure=measure,
            trial=self.trial(raw.get("trial")),
            cost=self.cost(raw.get("cost"), devices),
            guard=Guard(
                tolerance=self.number(guard_raw.get("tolerance", 0.02), "guard.tolerance", 0, 1e6),
                mode=self.string(guard_raw.get("mode", "relative"), "guard.mode",
                                 ("relative", "absolute")),
                steps=self.integer(guard_raw.get("steps", 5), "guard.steps", 1, 10_000),
                batch_size=self.integer(guard_raw.get("batch_size", 8), "guard.batch_size", 1,
                                        65_536),
                seed=self.integer(guard_raw.get("seed", 0), "guard.seed", 0, 2**31 - 1),
            ),
            sampler=self.sampler(raw.get("sampler")),
            storage=self.optional_string(raw.get("storage"), "storage"),
            tracking_uri=self.optional_string(raw.get("tracking_uri"), "tracking_uri"),
            try_first=self.try_first(raw.get("try_first"), knobs, baseline),
            nightly=self.nightly(raw.get("nightly")),
        )

    def optional_string(self, raw: Any, field_path: str) -> str | None:
        return None if raw is None else self.string(raw, field_path)

    def workload(self, raw: Any) -> WorkloadSpec:
        if raw is None:
            raise self.fail("workload", "missing section; e.g. workload: {name: resnet50}")
        if isinstance(raw, str):
            raw = {"name": raw}
        data = self.mapping(raw, "workload", ("name", "options"))
        name = self.string(data.get("name"), "workload.name")
        if ":" in name:
            module, _, factory = name.partition(":")
            if not module or not factory.isidentifier():
                raise self.fail("workload.name", f"expected 'package.module:factory', got {show(name)}")
            if not _module_exists(module):
                raise self.fail("workload.name", f"module {show(module)} not found; install it or "
                                "add it to PYTHONPATH")
        elif name not in BUILTIN_WORKLOADS:
            raise self.fail("workload.name", f"unknown workload {show(name)}; built-in: "
                            f"{', '.join(BUILTIN_WORKLOADS)}, or 'package.module:factory'")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise self.fail("workload.options", f"must be a mapping, got {_type_name(options)}")
        if _plain_size(options, OPTIONS_MAX_ITEMS) > OPTIONS_MAX_ITEMS:
            raise self.fail("workload.options", f"holds more than {OPTIONS_MAX_ITEMS:,} values "
                            "(YAML aliases expand); pass big inputs as a file path")
        try:  # options travel to the trial process as JSON
            encoded = json.dumps(options, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as error:
            raise self.fail("workload.options", f"must be plain data (numbers, strings, lists, "
                            f"mappings with string keys): {error}") from None
        if len(encoded) > 100_000:
            raise self.fail("workload.options", f"is {len(encoded):,} characters as JSON; "
                            "keep it under 100,000 (pass big inputs as a file path)")
        if not all(isinstance(key, str) for key in options):
            raise self.fail("workload.options", "keys must be strings")
        return WorkloadSpec(name=name, options=json.loads(encoded))

    def knobs(self, raw: Any) -> dict[str, KnobSpace]:
        if not isinstance(raw, dict) or not raw:
            raise self.fail("knobs", "must be a non-empty mapping of knob name to choices, e.g. "
                            "knobs: {batch_size: [16, 32, 64]}")
        spaces: dict[str, KnobSpace] = {}
        for name in raw:
            if name not in REGISTRY:
                raise self.fail(f"knobs.{name}", f"unknown knob; known: {', '.join(REGISTRY)}")
        for name in REGISTRY:  # registry order: a condition's knob comes first
            if name in raw:
                spaces[name] = self.knob(name, raw[name])
        return spaces

    def knob(self, name: str, raw: Any) -> KnobSpace:
        knob = REGISTRY[name]
        field_path = f"knobs.{name}"
        if isinstance(raw, list):
            raw = {"choices": raw}
        if not isinstance(raw, dict):
            raise self.fail(field_path, "must be a list of choices, or {choices: [...]}, or "
                            "an integer range {low: L, high: H}")
        if "choices" in raw:
            self.mapping(raw, field_path, ("choices",))
            choices = raw["choices"]
            if not isinstance(choices, list) or not choices:
                raise self.fail(f"{field_path}.choices", "must be a non-empty list")
            checked = []
            for index, choice in enumerate(choices):
                try:
                    checked.append(knob.check_choice(choice))
                except ValueError as error:
                    raise self.fail(f"{field_path}.choices[{index}]", str(error)) from None
            if len(set(map(repr, checked))) != len(checked):
                raise self.fail(f"{field_path}.choices", f"has duplicates: {checked}")
            return KnobSpace(name=name, choices=tuple(checked))
        if not knob.integer:
            raise self.fail(field_path, f"give choices, e.g. {name}: {list(knob.allowed or ())}")
        self.mapping(raw, field_path, ("low", "high", "step", "log"))
        if "low" not in raw or "high" not in raw:
            raise self.fail(field_path, "an integer range needs both low and high")
        low = self.integer(raw["low"], f"{field_path}.low", knob.min_value, 1_000_000)
        high = self.integer(raw["high"], f"{field_path}.high", knob.min_value, 1_000_000)
        if low > high:
            raise self.fail(field_path, f"bad range: low ({low}) is above high ({high})")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise self.fail(f"{field_path}.log", "must be true or false")
        step = self.integer(raw.get("step", 1), f"{field_path}.step", 1, 1_000_000)
        if log and step != 1:
            raise self.fail(f"{field_path}.step", "a log range takes no step")
        if log and low < 1:
            raise self.fail(f"{field_path}.low", "a log range needs low >= 1")
        if log and knob.log_range_in_powers_of_two:
            return KnobSpace(name=name, choices=powers_of_two(low, high))
        return KnobSpace(name=name, int_range=IntRange(low, high, step, log))

    def baseline(self, raw: Any, knobs: dict[str, KnobSpace]) -> dict[str, Any]:
        data = self.mapping(raw, "baseline", tuple(REGISTRY))
        values: dict[str, Any] = {}
        for name, knob in REGISTRY.items():
            value = data.get(name, knob.default)
            try:
                values[name] = knob.check_choice(value)
            except ValueError as error:
                raise self.fail(f"baseline.{name}", str(error)) from None
        for name, value in active_values(values).items():
            space = knobs.get(name)
            if space is not None and not space.contains(value):
                raise self.fail(f"baseline.{name}", f"{show(value)} is not among knobs.{name} "
                                f"{space.describe()}; add it there or change the baseline "
                                "(the baseline is the study's first trial)")
        return values

    def budget(self, raw: Any) -> Budget:
        data = self.mapping(raw, "budget", ("trials", "timeout_s", "confirm"))
        return Budget(
            trials=self.integer(data.get("trials", 12), "budget.trials", 1, 100_000),
            timeout_s=self.number(data.get("timeout_s", 1800), "budget.timeout_s", 1, 30 * 86400),
            confirm=(None if data.get("confirm", "auto") == "auto"
                     else self.integer(data.get("confirm"), "budget.confirm", 0, 100)),
        )

    def measure(self, raw: Any) -> MeasureSettings:
        data = self.mapping(raw, "measure", _MEASURE_FIELDS)
        max_cv = self.number(data.get("max_cv", 0.10), "measure.max_cv", 0.0, 10.0)
        timed = self.integer(data.get("timed_steps", 5), "measure.timed_steps", 1, 100_000)
        minimum = self.integer(data.get("min_timed_steps", min(3, timed)),
                               "measure.min_timed_steps", 1, 100_000)
        if minimum > timed:
            raise self.fail("measure.min_timed_steps", f"must not exceed timed_steps ({timed})")
        return MeasureSettings(
            warmup_steps=self.integer(data.get("warmup_steps", 1), "measure.warmup_steps", 0,
                                      100_000),
            timed_steps=timed,
            min_timed_steps=minimum,
            max_timed_s=self.number(data.get("max_timed_s", 120), "measure.max_timed_s", 0.001,
                                    86400),
            max_cv=max_cv,
            remeasure=self.integer(data.get("remeasure", 2), "measure.remeasure", 0, 10),
            screen_s=self.number(data.get("screen_s", 0), "measure.screen_s", 0, 86400),
            prune_below=self.number(data.get("prune_below", 0), "measure.prune_below", 0, 1),
        )

    def trial(self, raw: Any) -> TrialLimits:
        data = self.mapping(raw, "trial", ("time_limit_s", "max_concurrent", "memory_mb",
                                           "heartbeat_s"))
        memory = data.get("memory_mb", "auto")
        return TrialLimits(
            time_limit_s=self.number(data.get("time_limit_s", 600), "trial.time_limit_s", 1,
                                     7 * 86400),
            max_concurrent=self.integer(data.get("max_concurrent", 1), "trial.max_concurrent",
                                        1, 1024),
            memory_mb=None if memory == "auto" else self.integer(
                memory, "trial.memory_mb", 256, 64 * 1024 * 1024),
            heartbeat_s=self.integer(data.get("heartbeat_s", 10), "trial.heartbeat_s", 1, 600),
        )

    def try_first(self, raw: Any, knobs: dict[str, KnobSpace],
                  baseline: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        """Configs to enqueue right after the baseline: each a partial config of searched knobs."""
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail("try_first", "must be a list of configs, e.g. "
                            "try_first: [{batch_size: 64, memory_format: channels_last}]")
        configs = []
        for index, entry in enumerate(raw):
            field_path = f"try_first[{index}]"
            data = self.mapping(entry, field_path, tuple(knobs))
            if not data:
                raise self.fail(field_path, "is empty; give at least one knob value")
            for name, value in data.items():
                if not knobs[name].contains(value):
                    raise self.fail(f"{field_path}.{name}", f"{show(value)} is not among knobs.{name} "
                                    f"{knobs[name].describe()}")
            configs.append(dict(data))
        return tuple(configs)

    def objectives(self, raw: Any) -> tuple[str, ...]:
        if isinstance(raw, str):
            return (self.string(raw, "objective", OBJECTIVES),)
        if (not isinstance(raw, list) or not 1 <= len(raw) <= 2
                or len(set(map(repr, raw))) != len(raw)):
            raise self.fail("objective", f"give one of {', '.join(OBJECTIVES)}, or both as a "
                            "list for a Pareto front: [samples_per_sec, samples_per_dollar]")
        return tuple(self.string(item, f"objective[{index}]", OBJECTIVES)
                     for index, item in enumerate(raw))

    def worker_price(self, raw: Any, field_path: str, default: float | None) -> WorkerPrice:
        data = self.mapping(raw, field_path, ("price_per_hour", "instance", "source"))
        if "price_per_hour" not in data and default is None:
            raise self.fail(f"{field_path}.price_per_hour", "missing; give the worker's price "
                            "per hour (e.g. its on-demand price)")
        return WorkerPrice(
            price_per_hour=self.number(data.get("price_per_hour", default),
                                       f"{field_path}.price_per_hour", 1e-9, 1e6),
            instance=self.optional_string(data.get("instance"), f"{field_path}.instance") or "",
            source=self.optional_string(data.get("source"), f"{field_path}.source") or "",
        )

    def cost(self, raw: Any, devices: tuple[str, ...]) -> Cost:
        from tuner.knobs.device import Device

        per_device = Device.allowed or ()
        data = self.mapping(raw, "cost", ("price_per_hour", "currency", "instance", "source",
                                          "as_of", *per_device))
        flat = self.worker_price({k: data[k] for k in ("price_per_hour", "instance", "source")
                                  if k in data}, "cost", 1.0)
        prices = {device: self.worker_price(data[device], f"cost.{device}", None)
                  for device in per_device if device in data}
        unpriced = [device for device in devices if device not in prices]
        if len(devices) > 1 and unpriced:
            raise self.fail(f"cost.{unpriced[0]}", f"missing: trials run on {' and '.join(devices)}, "
                            "so each device needs its own price, e.g. cost: {cpu: "
                            "{price_per_hour: 0.357}, cuda: {price_per_hour: 1.212}}")
        as_of = data.get("as_of")
        return Cost(
            price_per_hour=flat.price_per_hour,
            currency=self.string(data.get("currency", "USD"), "cost.currency"),
            instance=flat.instance,
            source=flat.source,
            as_of="" if as_of is None else self.string(str(as_of), "cost.as_of"),
            devices=prices,
        )

    def nightly(self, raw: Any) -> Nightly:
        data = self.mapping(raw, "nightly", ("threshold", "warm_start"))
        return Nightly(
            threshold=self.number(data.get("threshold", 0.10), "nightly.threshold", 0.0, 0.99),
            warm_start=self.integer(data.get("warm_start", 3), "nightly.warm_start", 0, 100),
        )

    def sampler(self, raw: Any) -> Sampler:
        data = self.mapping(raw, "sampler", ("name", "seed", "startup_trials", "start", "priors"))
        seed = data.get("seed", 0)
        return Sampler(
            name=self.string(data.get("name", "tpe"), "sampler.name", SAMPLERS),
            seed=None if seed is None else self.integer(seed, "sampler.seed", 0, 2**31 - 1),
            startup_trials=self.integer(data.get("startup_trials", 5), "sampler.startup_trials",
                                        0, 100_000),
            start=self.string(data.get("start", "sweep"), "sampler.start", STARTS),
            priors=self.boolean(data.get("priors", True), "sampler.priors"),
        )


_MEASURE_FIELDS = ("warmup_steps", "timed_steps", "min_timed_steps", "max_timed_s", "max_cv",
                   "remeasure", "screen_s", "prune_below")
