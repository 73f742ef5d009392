"""The search-space file's sections, read into the typed space (tuner.driver.space.model)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tuner import metrics as mx
from tuner.driver.space.fields import (
    FieldReader,
    module_exists,
    plain_size,
    study_name_problem,
    type_name,
)
from tuner.driver.space.model import (
    GUARD_MODES,
    SAMPLERS,
    STARTS,
    Budget,
    Cost,
    Guard,
    IntRange,
    KnobSpace,
    Nightly,
    Sampler,
    Space,
    TrialLimits,
    WorkerPrice,
    _devices,
    powers_of_two,
)
from tuner.errors import did_you_mean, show
from tuner.knobs import REGISTRY, active_values
from tuner.trial import MeasureSettings, WorkloadSpec
from tuner.workloads.registry import BUILTIN_WORKLOADS

SECTIONS = (
    "study", "description", "workload", "objective", "knobs", "baseline", "budget", "measure",
    "trial", "cost", "guard", "sampler", "storage", "tracking_uri", "try_first", "nightly",
)
OPTIONS_MAX_ITEMS = 10_000


class SpaceReader(FieldReader):
    """Reads the space's sections; every error names the field's path."""

    def space(self, raw: dict[str, Any], default_study: str) -> Space:
        self.mapping(raw, "", SECTIONS)
        study = self.string(raw.get("study", default_study), "study")
        problem = study_name_problem(study)
        if problem:
            raise self.fail("study", problem)
        if "knobs" not in raw:
            raise self.fail("knobs", "missing section; list the knobs to search, e.g. "
                            "knobs: {batch_size: [16, 32, 64]}")
        knobs = self.knobs(raw["knobs"])
        baseline = self.baseline(raw.get("baseline"), knobs)
        measure = self.measure(raw.get("measure"))
        objectives = self.objectives(raw.get("objective", mx.SAMPLES_PER_SEC))
        if mx.JOB_SAMPLES_PER_SEC in objectives and measure.job_steps is None:
            raise self.fail("measure.job_steps", "missing; objective job_samples_per_sec "
                            "needs the length of your job in steps, e.g. measure: {job_steps: "
                            "2000}")
        devices = _devices(knobs, baseline)
        return Space(
            source=self.source,
            study=study,
            description=self.optional_string(raw.get("description"), "description") or "",
            workload=self.workload(raw.get("workload")),
            objectives=objectives,
            knobs=knobs,
            baseline=baseline,
            budget=self.budget(raw.get("budget")),
            measure=measure,
            trial=self.trial(raw.get("trial")),
            cost=self.cost(raw.get("cost"), devices),
            guard=self.section(Guard, raw.get("guard"), "guard", {
                "tolerance": lambda v, p: self.number(v, p, 0, 1e6),
                "mode": lambda v, p: self.string(v, p, GUARD_MODES),
                "steps": lambda v, p: self.integer(v, p, 1, 10_000),
                "batch_size": lambda v, p: self.integer(v, p, 1, 65_536),
                "seed": lambda v, p: self.integer(v, p, 0, 2**31 - 1)}),
            sampler=self.sampler(raw.get("sampler")),
            storage=self.optional_string(raw.get("storage"), "storage"),
            tracking_uri=self.optional_string(raw.get("tracking_uri"), "tracking_uri"),
            try_first=self.try_first(raw.get("try_first"), knobs, baseline),
            nightly=self.nightly(raw.get("nightly")),
        )

    def workload(self, raw: Any) -> WorkloadSpec:
        if raw is None:
            raise self.fail("workload", "missing section; e.g. workload: {name: resnet50}")
        if isinstance(raw, str):
            raw = {"name": raw}
        data = self.mapping(raw, "workload",
                            ("name", "function", "script", "args", "scenario", "options"))
        given = [key for key in ("name", "function", "script") if key in data]
        if len(given) != 1:
            raise self.fail("workload", "give exactly one of name (a workload), function "
                            "(package.module:function, your own job) or script (a .py file, "
                            f"your own job); got {', '.join(given) or 'none'}")
        job = "" if given[0] == "name" else given[0]
        if not job and ("args" in data or "scenario" in data):
            raise self.fail(f"workload.{'args' if 'args' in data else 'scenario'}",
                            "belongs to your own job (workload.function or workload.script); "
                            "a workload object says its scenario itself")
        if job == "script":
            name = self._script(data["script"])
        else:
            name = self._target(data[given[0]], f"workload.{given[0]}", job)
        args = data.get("args") or []
        if job != "script" and "args" in data:
            raise self.fail("workload.args", "only a script takes args; a function takes options")
        if not isinstance(args, list) or not all(isinstance(a, str | int | float)
                                                 and not isinstance(a, bool) for a in args):
            raise self.fail("workload.args", "must be a list of strings, e.g. args: [--epochs, "
                            "'3']")
        scenario = self.string(data.get("scenario", "train"), "workload.scenario",
                               ("train", "infer"))
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise self.fail("workload.options", f"must be a mapping, got {type_name(options)}")
        if plain_size(options, OPTIONS_MAX_ITEMS) > OPTIONS_MAX_ITEMS:
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
        if job == "script" and options:
            raise self.fail("workload.options", "a script takes args, not options")
        return WorkloadSpec(name=name, options=json.loads(encoded), job=job,
                            args=[str(a) for a in args], scenario=scenario)

    def _target(self, raw: Any, field_path: str, job: str) -> str:
        """`package.module:attribute` whose module exists, or a built-in workload's name."""
        name = self.string(raw, field_path)
        what = "function" if job else "factory"
        if ":" in name:
            module, _, attribute = name.partition(":")
            if not module or not attribute.isidentifier():
                raise self.fail(field_path, f"expected 'package.module:{what}', got {show(name)}")
            if not module_exists(module):
                raise self.fail(field_path, f"module {show(module)} not found; install it or "
                                "add its folder to PYTHONPATH (e.g. PYTHONPATH=. tuner search "
                                "...)")
        elif job:
            raise self.fail(field_path, f"expected 'package.module:function', got {show(name)}")
        elif name not in BUILTIN_WORKLOADS:
            raise self.fail(field_path, f"unknown workload {show(name)}; built-in: "
                            f"{', '.join(BUILTIN_WORKLOADS)}, or 'package.module:factory'")
        return name

    def _script(self, raw: Any) -> str:
        """The script's absolute path (relative to where `tuner` runs, as `python` reads it)."""
        path = Path(self.string(raw, "workload.script")).expanduser()
        if not path.is_file():
            raise self.fail("workload.script", f"{show(str(path))}: no such file (a path from "
                            f"the current folder, {Path.cwd()})")
        if path.suffix != ".py":
            raise self.fail("workload.script", f"{show(str(path))}: not a .py file")
        return str(path.resolve())

    def knobs(self, raw: Any) -> dict[str, KnobSpace]:
        if not isinstance(raw, dict) or not raw:
            raise self.fail("knobs", "must be a non-empty mapping of knob name to choices, e.g. "
                            "knobs: {batch_size: [16, 32, 64]}")
        spaces: dict[str, KnobSpace] = {}
        for name in raw:
            if name not in REGISTRY:
                raise self.fail(f"knobs.{name}", f"unknown knob; {did_you_mean(name, REGISTRY)}"
                                f"known: {', '.join(REGISTRY)}")
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
                    raise self.fail(f"{field_path}.{name}",
                                    f"{show(value)} is not among knobs.{name} "
                                    f"{knobs[name].describe()}")
            configs.append(dict(data))
        return tuple(configs)

    def objectives(self, raw: Any) -> tuple[str, ...]:
        if isinstance(raw, str):
            return (self.string(raw, "objective", mx.OBJECTIVES),)
        if (not isinstance(raw, list) or not 1 <= len(raw) <= 2
                or len(set(map(repr, raw))) != len(raw)):
            raise self.fail("objective", f"give one of {', '.join(mx.OBJECTIVES)}, or both as a "
                            "list for a Pareto front: [samples_per_sec, samples_per_dollar]")
        return tuple(self.string(item, f"objective[{index}]", mx.OBJECTIVES)
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
                                  if k in data}, "cost", WorkerPrice.price_per_hour)
        prices = {device: self.worker_price(data[device], f"cost.{device}", None)
                  for device in per_device if device in data}
        unpriced = [device for device in devices if device not in prices]
        if len(devices) > 1 and unpriced:
            raise self.fail(f"cost.{unpriced[0]}",
                            f"missing: trials run on {' and '.join(devices)}, "
                            "so each device needs its own price, e.g. cost: {cpu: "
                            "{price_per_hour: 0.357}, cuda: {price_per_hour: 1.212}}")
        as_of = data.get("as_of")
        return Cost(
            price_per_hour=flat.price_per_hour,
            currency=self.string(data.get("currency", Cost.currency), "cost.currency"),
            instance=flat.instance,
            source=flat.source,
            as_of="" if as_of is None else self.string(str(as_of), "cost.as_of"),
            devices=prices,
        )

    def budget(self, raw: Any) -> Budget:
        return self.section(Budget, raw, "budget", {
            "trials": lambda v, p: None if v is None else self.integer(v, p, 1, 100_000),
            "timeout_s": lambda v, p: self.number(v, p, 1, 30 * 86400),
            "confirm": lambda v, p: None if v in (None, "auto") else self.integer(v, p, 0, 100),
            "confirm_rounds": lambda v, p: self.integer(v, p, 1, 50),
            "sentinel_every": lambda v, p: None if v in (None, "auto")
            else self.integer(v, p, 0, 10_000)})

    def measure(self, raw: Any) -> MeasureSettings:
        settings = self.section(MeasureSettings, raw, "measure", {
            "warmup_steps": lambda v, p: self.integer(v, p, 0, 100_000),
            "timed_steps": lambda v, p: self.integer(v, p, 1, 100_000),
            "min_timed_steps": lambda v, p: self.integer(v, p, 1, 100_000),
            "max_timed_s": lambda v, p: self.number(v, p, 0.001, 86400),
            "max_cv": lambda v, p: self.number(v, p, 0.0, 10.0),
            "max_median_error": lambda v, p: self.number(v, p, 0.0, 1.0),
            "remeasure": lambda v, p: self.integer(v, p, 0, 10),
            "screen_s": lambda v, p: self.number(v, p, 0, 86400),
            "prune_below": lambda v, p: self.number(v, p, 0, 1),
            "job_steps": lambda v, p: None if v is None else self.integer(v, p, 1, 10**9),
            "drift_tolerance": lambda v, p: self.number(v, p, 0.0, 10.0)})
        if "min_timed_steps" not in (raw or {}):  # the default, within a small timed_steps
            settings = dataclasses.replace(settings, min_timed_steps=min(
                settings.min_timed_steps, settings.timed_steps))
        if settings.min_timed_steps > settings.timed_steps:
            raise self.fail("measure.min_timed_steps",
                            f"must not exceed timed_steps ({settings.timed_steps})")
        return settings

    def trial(self, raw: Any) -> TrialLimits:
        return self.section(TrialLimits, raw, "trial", {
            "time_limit_s": lambda v, p: self.number(v, p, 1, 7 * 86400),
            "max_concurrent": lambda v, p: self.integer(v, p, 1, 1024),
            "memory_mb": lambda v, p: (None if v in (None, "auto")
                                       else self.integer(v, p, 256, 64 * 1024 * 1024)),
            "heartbeat_s": lambda v, p: self.integer(v, p, 1, 600),
            "pass_env": self.variable_names})

    def variable_names(self, raw: Any, field_path: str) -> tuple[str, ...]:
        if not isinstance(raw, list | tuple):
            raise self.fail(field_path, f"must be a list of variable names, got {type_name(raw)}")
        names = tuple(self.string(item, f"{field_path}[{index}]")
                      for index, item in enumerate(raw))
        for index, name in enumerate(names):
            if not (name.replace("_", "a").isalnum() and name.isascii()
                    and not name[0].isdigit()):
                raise self.fail(f"{field_path}[{index}]", f"not a variable name: {show(name)}")
        return names

    def nightly(self, raw: Any) -> Nightly:
        return self.section(Nightly, raw, "nightly", {
            "threshold": lambda v, p: self.number(v, p, 0.0, 0.99),
            "warm_start": lambda v, p: self.integer(v, p, 0, 100)})

    def sampler(self, raw: Any) -> Sampler:
        return self.section(Sampler, raw, "sampler", {
            "name": lambda v, p: self.string(v, p, SAMPLERS),
            "seed": lambda v, p: None if v is None else self.integer(v, p, 0, 2**31 - 1),
            "startup_trials": lambda v, p: self.integer(v, p, 0, 100_000),
            "transfer": lambda v, p: self.integer(v, p, 0, 100),
            "start": lambda v, p: self.string(v, p, STARTS),
            "priors": lambda v, p: self.boolean(v, p)})
