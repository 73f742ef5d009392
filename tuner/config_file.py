"""A best-config file (`tuner search` writes it to tuner-runs/best/STUDY.yaml): its knobs,
checked as a space checks them. Read by `tuner launch`/`export` and by the in-process API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuner.errors import UserError, show
from tuner.knobs import REGISTRY, active_values

CONFIG_ENV = "TUNER_CONFIG"  # the config a job runs under (`tuner launch` sets it)


def read_config(path: Path) -> dict[str, Any]:
    """The knobs of a best-config file (`tuner search` writes it), checked as a space checks
    them; anything else is one line naming the file and the fix."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read it: {getattr(error, 'strerror', None) or error}; "
                        "give a best-config file (tuner-runs/best/STUDY.yaml)") from None
    except yaml.YAMLError as error:
        first = (str(error).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{path}: not YAML ({first}); give a best-config file") from None
    knobs = data.get("knobs") if isinstance(data, dict) else None
    if not isinstance(knobs, dict):
        raise UserError(f"{path}: knobs: missing; a best-config file holds the found config "
                        "under `knobs:` (tuner-runs/best/STUDY.yaml)")
    return check_knobs(knobs, str(path))


def check_knobs(knobs: dict[Any, Any], source: str = "config") -> dict[str, Any]:
    """Each knob known and each choice one it allows, normalised; inactive ones dropped."""
    checked: dict[str, Any] = {}
    for name, value in knobs.items():
        knob = REGISTRY.get(str(name))
        if knob is None:
            raise UserError(f"{source}: knobs.{show(name)}: unknown knob; known: "
                            f"{', '.join(REGISTRY)}")
        try:
            checked[knob.name] = knob.check_choice(value)
        except ValueError as error:
            raise UserError(f"{source}: knobs.{knob.name}: {error}") from None
    return active_values(checked)
