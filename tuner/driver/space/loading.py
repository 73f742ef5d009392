"""A search-space YAML file, validated into typed objects before anything is created.

Every error names the file, the field and what is allowed, so a bad file costs the user one
line of output and nothing on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuner.driver.space.fields import plain_size, type_name
from tuner.driver.space.model import Space
from tuner.driver.space.reader import SpaceReader
from tuner.errors import SpaceError, show


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
    return parse_space(text, source=source, default_study=file.stem, overrides=overrides,
                       folder=file.parent)


DOCUMENT_MAX_VALUES = 100_000  # a space holds hundreds; an alias bomb, billions


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the plain loader keeps
    the last, silently: `budget: {trials: 4, trials: 400}` would run 400)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the reader reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {show(key)} given twice in one mapping", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str, field_path: str = "") -> Any:
    """YAML text as plain data, or SpaceError: a syntax error, a key given twice, nesting too
    deep, an integer longer than Python converts, an alias bomb."""
    what = "YAML" if not field_path else "value"
    try:
        value = yaml.load(text, Loader=_StrictLoader)
    except RecursionError:
        raise SpaceError(source, field_path, f"{what} nested too deeply") from None
    except ValueError as error:  # int('9' * 5000): Python's limit on digits
        raise SpaceError(source, field_path, f"{what} holds a number too long to read: "
                         f"{str(error).split(':')[0][:80]}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise SpaceError(source, field_path, f"YAML syntax error{where}: {problem}") from None
    if plain_size(value, DOCUMENT_MAX_VALUES) > DOCUMENT_MAX_VALUES:
        raise SpaceError(source, field_path, f"{what} holds more than {DOCUMENT_MAX_VALUES:,} "
                         "values once its YAML aliases are expanded")
    return value


def parse_space(
    text: str, *, source: str = "<space>", default_study: str = "study",
    overrides: list[str] | None = None, folder: Path | None = None,
) -> Space:
    raw = read_yaml(text, source)
    if raw is None:
        raise SpaceError(source, "", "file is empty; expected a mapping with at least "
                         "'workload' and 'knobs' sections (see search_spaces/cpu_train.yaml)")
    if not isinstance(raw, dict):
        raise SpaceError(source, "", f"expected a mapping of sections at the top level, "
                         f"got {type_name(raw)}")
    if "extends" in raw:
        raw = _extended(raw, source, folder or Path.cwd(), (str(Path(source).resolve()),))
    for override in overrides or []:
        _apply_override(raw, override, source)
    return SpaceReader(source).space(raw, default_study)


MAX_EXTENDS = 8  # files in a chain of `extends:`


def _extended(raw: dict[str, Any], source: str, folder: Path,
              chain: tuple[str, ...]) -> dict[str, Any]:
    """`extends: base.yaml`: the base file's sections, this file's merged over them (mappings
    merged key by key, anything else replaced; `key: null` removes the base's key). The base
    may extend another; a cycle or a missing file is one line naming the field."""
    target = raw.pop("extends")
    if not isinstance(target, str) or not target.strip():
        raise SpaceError(source, "extends", "must be the path of another space file, e.g. "
                         "extends: cpu_train.yaml")
    path = (folder / target).resolve()
    if str(path) in chain:
        raise SpaceError(source, "extends", f"{target} extends this file again (a cycle: "
                         f"{' -> '.join(Path(item).name for item in (*chain, str(path)))})")
    if len(chain) >= MAX_EXTENDS:
        raise SpaceError(source, "extends", f"more than {MAX_EXTENDS} files extend each other")
    if not path.is_file():
        raise SpaceError(source, "extends", f"no such file {path} (a path relative to "
                         f"{folder})")
    try:
        base = read_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as error:
        raise SpaceError(source, "extends", f"cannot read {path}: {error}") from None
    if not isinstance(base, dict):
        raise SpaceError(str(path), "", "expected a mapping of sections at the top level")
    if "extends" in base:
        base = _extended(base, str(path), path.parent, (*chain, str(path)))
    return _merged(base, raw)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if value is None and key in base and isinstance(base[key], dict | list):
            merged.pop(key)  # `knobs: {compile: null}`: the base's knob left out
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merged(base[key], value)
        else:
            merged[key] = value
    return merged


def _apply_override(raw: dict[str, Any], override: str, source: str) -> None:
    """`--set a.b.c=VALUE`: VALUE is read as YAML, so numbers and lists keep their types."""
    key, sep, value_text = override.partition("=")
    if not sep or not key.strip():
        raise SpaceError(source, "--set", f"expected KEY=VALUE (e.g. budget.trials=4), "
                         f"got {show(override)}")
    value = read_yaml(value_text, source, f"--set {key}")
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


