"""A JSON Schema of the space file, generated from the typed classes and the knob registry (one
source of truth): editors with the YAML language server complete and check a space file from
it (`# yaml-language-server: $schema=space.schema.json`). The loader stays the judge: the
schema catches the shape and the vocabulary early, the loader every cross-field rule.

`tuner schema > search_spaces/space.schema.json` writes the shipped copy; a test keeps it equal.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tuner import metrics as mx
from tuner.driver.space.model import (
    GUARD_MODES,
    SAMPLERS,
    STARTS,
    Budget,
    Guard,
    Nightly,
    Sampler,
    TrialLimits,
)
from tuner.driver.space.reader import SECTIONS
from tuner.knobs import REGISTRY
from tuner.trial import MeasureSettings

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"},
    "str": {"type": "string"}, "tuple[str, ...]": {"type": "array", "items": {"type": "string"}}}
ENUMS = {("sampler", "name"): SAMPLERS, ("sampler", "start"): STARTS,
         ("guard", "mode"): GUARD_MODES}
AUTO = ("confirm", "memory_mb", "sentinel_every")  # None or "auto": chosen by the tuner


def _field(section: str, field: dataclasses.Field[Any]) -> dict[str, Any]:
    annotation = str(field.type)
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    schema: dict[str, Any] = dict(TYPES.get(base, {}))
    if (section, field.name) in ENUMS:
        schema["enum"] = list(ENUMS[(section, field.name)])
    if optional:
        schema = {"anyOf": [schema, {"type": "null"}]
                  + ([{"const": "auto"}] if field.name in AUTO else [])}
    default = field.default
    if default is not dataclasses.MISSING:
        schema["default"] = list(default) if isinstance(default, tuple) else default
    return schema


def _section(name: str, cls: type) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "description": cls.__doc__ or "",
            "properties": {field.name: _field(name, field)
                           for field in dataclasses.fields(cls)}}


def _choice(knob: Any) -> dict[str, Any]:
    if knob.allowed is not None:
        values = list(knob.allowed)
        return {"enum": values + ([True, False] if "on" in values else [])}
    if knob.integer:
        return {"anyOf": [{"type": "integer", "minimum": knob.min_value}, {"type": "string"}]}
    return {}


def _knobs() -> dict[str, Any]:
    properties = {}
    for name, knob in REGISTRY.items():
        choices = {"type": "array", "minItems": 1, "items": _choice(knob)}
        forms: list[dict[str, Any]] = [choices, {
            "type": "object", "additionalProperties": False,
            "properties": {"choices": choices}, "required": ["choices"]}]
        if knob.integer:
            forms.append({"type": "object", "additionalProperties": False,
                          "required": ["low", "high"],
                          "properties": {"low": {"type": "integer"}, "high": {"type": "integer"},
                                         "step": {"type": "integer", "minimum": 1},
                                         "log": {"type": "boolean"}}})
        properties[name] = {"description": (knob.__doc__ or "").strip().split("\n")[0],
                            "anyOf": forms}
    return {"type": "object", "minProperties": 1, "additionalProperties": False,
            "properties": properties}


def _config() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "properties": {name: _choice(knob) for name, knob in REGISTRY.items()}}


def schema() -> dict[str, Any]:
    price_fields: dict[str, Any] = {"price_per_hour": {"type": "number", "exclusiveMinimum": 0},
                                    "instance": {"type": "string"}, "source": {"type": "string"}}
    price = {"type": "object", "additionalProperties": False, "properties": price_fields}
    objective = {"enum": list(mx.OBJECTIVES)}
    properties: dict[str, Any] = {
        "extends": {"type": "string", "description": "a space file this one builds on (a "
                    "path relative to this file); this file's sections override its sections"},
        "study": {"type": "string"},
        "description": {"type": "string"},
        "workload": {"anyOf": [{"type": "string"}, {
            "type": "object", "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "function": {"type": "string"},
                           "script": {"type": "string"}, "options": {"type": "object"},
                           "args": {"type": "array", "items": {"type": "string"}},
                           "scenario": {"enum": ["train", "infer"]}}}]},
        "objective": {"anyOf": [objective, {"type": "array", "items": objective,
                                            "minItems": 1, "maxItems": 2}]},
        "knobs": _knobs(),
        "baseline": _config(),
        "try_first": {"type": "array", "items": _config()},
        "budget": _section("budget", Budget),
        "measure": _section("measure", MeasureSettings),
        "trial": _section("trial", TrialLimits),
        "guard": _section("guard", Guard),
        "sampler": _section("sampler", Sampler),
        "nightly": _section("nightly", Nightly),
        "cost": {"type": "object", "additionalProperties": False,
                 "properties": {**price_fields, "currency": {"type": "string"},
                                "as_of": {"type": ["string", "number"]},
                                "cpu": price, "cuda": price}},
        "storage": {"type": ["string", "null"]},
        "tracking_uri": {"type": ["string", "null"]},
    }
    assert set(properties) - {"extends"} == set(SECTIONS), "a section the schema lacks"
    return {"$schema": SCHEMA_URL, "$id": "https://tuner.invalid/space.schema.json",
            "title": "tuner search space", "type": "object", "additionalProperties": False,
            "properties": properties}  # nothing required: a base file of `extends` may lack
                                       # knobs; the loader says what a search needs


def fields_markdown() -> str:
    """Every field of the settings sections with its type and default (docs/reference.md)."""
    lines = ["| field | type | default |", "|---|---|---|"]
    for section, spec in schema()["properties"].items():
        for name, field in spec.get("properties", {}).items() if section in (
                "budget", "measure", "trial", "guard", "sampler", "nightly") else ():
            kinds = [option.get("type", option.get("const")) for option in
                     field.get("anyOf", [field])]
            kind = " or ".join(str(k) for k in kinds if k)
            if "enum" in field:
                kind = " or ".join(map(str, field["enum"]))
            default = field.get("default")
            shown = ("auto" if "auto" in kinds else "null") if default is None else default
            lines.append(f"| `{section}.{name}` | {kind} | {shown} |")
    return "\n".join(lines) + "\n"
