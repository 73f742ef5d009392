"""A validated space written back as a space file with every default filled in: what
`tuner validate --print-config` shows and what a search logs to MLflow (the file after --set,
as the search used it). Loading the text again gives the same Space.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from tuner.driver.space.model import KnobSpace, Space


def _knob(knob: KnobSpace) -> Any:
    if knob.choices is not None:
        return list(knob.choices)
    assert knob.int_range is not None
    return dataclasses.asdict(knob.int_range)


def _plain(value: Any) -> Any:
    """Tuples as lists (YAML's safe dumper writes no Python tags)."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _workload(space: Space) -> dict[str, Any]:
    workload = space.workload
    if workload.job == "script":
        return {"script": workload.name, "args": list(workload.args),
                "scenario": workload.scenario}
    if workload.job:
        return {"function": workload.name, "options": dict(workload.options),
                "scenario": workload.scenario}
    return {"name": workload.name, "options": dict(workload.options)}


def _cost(space: Space) -> dict[str, Any]:
    cost = space.cost
    data: dict[str, Any] = {"price_per_hour": cost.price_per_hour, "currency": cost.currency,
                            "instance": cost.instance, "source": cost.source,
                            "as_of": cost.as_of}
    for device, worker in cost.devices.items():
        data[device] = _given(dataclasses.asdict(worker))
    return _given(data)


def _given(data: dict[str, Any]) -> dict[str, Any]:
    """Empty texts left out: the file format has no empty string (a missing key means none)."""
    return {key: value for key, value in data.items() if value != ""}


def resolved(space: Space) -> dict[str, Any]:
    """The space as the plain data of a space file, every default written out."""
    data: dict[str, Any] = {
        "study": space.study,
        **({"description": space.description} if space.description else {}),
        "workload": _workload(space),
        "objective": list(space.objectives),
        "knobs": {name: _knob(knob) for name, knob in space.knobs.items()},
        "baseline": dict(space.baseline),
        "try_first": [dict(config) for config in space.try_first],
    }
    for section in ("budget", "measure", "trial", "guard", "sampler", "nightly"):
        data[section] = dataclasses.asdict(getattr(space, section))
    data["cost"] = _cost(space)
    data["storage"] = space.storage
    data["tracking_uri"] = space.tracking_uri
    return _plain(data)


def as_params(space: Space) -> dict[str, str]:
    """The space's settings as MLflow params of the search's run (`space.budget.trials`): the
    UI shows params in full and compares them across searches; tags are cut off there."""
    data = resolved(space)
    params = {"space.study": space.study, "space.objective": ",".join(space.objectives)}
    for section in ("workload", "knobs", "budget", "measure", "trial", "guard", "sampler",
                    "nightly", "cost"):
        for key, value in data[section].items():
            params[f"space.{section}.{key}"] = (
                yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=10_000).strip()
                if isinstance(value, dict | list) else str(value))
    return {key: value[:6000] for key, value in params.items()}  # MLflow's limit per value


class _Dumper(yaml.SafeDumper):
    """Lists of plain values on one line (`batch_size: [16, 64, 256]`), as people write them."""


def _list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat)


_Dumper.add_representer(list, _list)


def resolved_yaml(space: Space) -> str:
    header = (f"# {space.source} as the tuner reads it (overrides applied, every default "
              "written out)\n")
    return header + yaml.dump(resolved(space), Dumper=_Dumper, sort_keys=False, width=100)
