"""Reading typed fields from raw YAML: each check raises SpaceError naming the field's path and
what is allowed. A section of plain settings is read from its dataclass: the allowed keys are
its fields, the defaults its own.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Callable
from typing import Any, TypeVar

from tuner.errors import SpaceError, did_you_mean, show

T = TypeVar("T")
Check = Callable[[Any, str], Any]  # (raw value, field path) -> the checked value


class FieldReader:
    """Reads typed fields from the raw YAML, raising SpaceError with the field's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field_path: str, message: str) -> SpaceError:
        return SpaceError(self.source, field_path, message)

    def mapping(self, raw: Any, field_path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(field_path, f"must be a mapping, got {type_name(raw)}")
        for key in raw:
            if key not in allowed:
                what = "section" if not field_path else "field"
                plain = (key if isinstance(key, str) and key.isprintable() and len(key) <= 60
                         else show(key))
                name = f"{field_path}.{plain}" if field_path else plain
                raise self.fail(name, f"unknown {what}; {did_you_mean(key, allowed)}allowed: "
                                f"{', '.join(allowed)}")
        return raw

    def integer(self, raw: Any, field_path: str, low: int, high: int) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.fail(field_path, f"must be an integer from {low} to {high}, "
                            f"got {type_name(raw)} {show(raw)}")
        if not low <= raw <= high:
            raise self.fail(field_path, f"must be from {low} to {high}, got {raw}")
        return raw

    def number(self, raw: Any, field_path: str, low: float, high: float) -> float:
        if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) > 10**300:
            raise self.fail(field_path, f"must be from {low:g} to {high:g}, got a {len(str(raw))}"
                            "-digit number")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise self.fail(field_path, f"must be a number from {low:g} to {high:g}, "
                            f"got {type_name(raw)} {show(raw)}")
        if not low <= raw <= high:
            raise self.fail(field_path, f"must be from {low:g} to {high:g}, got {raw:g}")
        return float(raw)

    def boolean(self, raw: Any, field_path: str) -> bool:
        if not isinstance(raw, bool):
            raise self.fail(field_path, f"must be true or false, got {type_name(raw)} "
                            f"{show(raw)}")
        return raw

    def string(self, raw: Any, field_path: str, allowed: tuple[str, ...] | None = None) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail(field_path, f"must be a non-empty string, got {type_name(raw)}")
        if allowed is not None and raw not in allowed:
            raise self.fail(field_path, f"{did_you_mean(raw, allowed)}must be one of "
                            f"{', '.join(allowed)}; got {show(raw)}")
        return raw

    def optional_string(self, raw: Any, field_path: str) -> str | None:
        return None if raw is None else self.string(raw, field_path)

    def section(self, cls: type[T], raw: Any, name: str, checks: dict[str, Check]) -> T:
        """A section whose keys are `cls`'s fields, each defaulting to the class's default and
        read by its check."""
        allowed = tuple(field.name for field in dataclasses.fields(cls))  # type: ignore[arg-type]
        data = self.mapping(raw, name, allowed)
        defaults = cls()
        return cls(**{key: checks[key](data.get(key, getattr(defaults, key)), f"{name}.{key}")
                      for key in allowed})


STUDY_NAME_MAX = 100


def study_name_problem(name: str) -> str | None:
    """What is wrong with a study name, or None. It names files (the best config, plots) and
    MLflow's experiment: ASCII letters, digits, '-', '_' and '.', not starting with '.' or '-'."""
    if not name or len(name) > STUDY_NAME_MAX:
        return f"give 1 to {STUDY_NAME_MAX} characters, got {len(name)}"
    if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name) \
            or name[0] in ".-":
        return (f"use letters, digits, '-', '_' or '.' (not first: '.' or '-'), "
                f"got {show(name)}")
    return None


def plain_size(value: Any, limit: int) -> int:
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


def module_exists(dotted: str) -> bool:
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


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


