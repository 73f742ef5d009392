"""Every knob as a person reads it (`tuner knobs`, docs/reference.md): its choices, its default,
what it does, and whether the accuracy guard checks it. From the registry: one source."""

from __future__ import annotations

from typing import Any

from tuner.knobs import REGISTRY


def knob_rows() -> list[dict[str, Any]]:
    rows = []
    for name, knob in REGISTRY.items():
        choices = (list(knob.allowed) if knob.allowed is not None else
                   f"integers >= {knob.min_value}" + (", or default" if isinstance(
                       knob.default, str) else ""))
        rows.append({"knob": name, "choices": choices, "default": knob.default,
                     "guarded": knob.changes_numerics, "inference_only": knob.inference_only,
                     "what": knob.help})
    return rows


def _choices(row: dict[str, Any]) -> str:
    return ", ".join(map(str, row["choices"])) if isinstance(row["choices"], list) \
        else row["choices"]


def knob_markdown() -> str:
    lines = ["| knob | choices | default | guard checks it | what it does |",
             "|---|---|---|:-:|---|"]
    lines += [f"| `{row['knob']}` | {_choices(row)} | {row['default']} | "
              f"{'yes' if row['guarded'] else ''} | {row['what']} |" for row in knob_rows()]
    return "\n".join(lines) + "\n"


def knob_text() -> str:
    lines = []
    for row in knob_rows():
        guard = "; the accuracy guard checks it" if row["guarded"] else ""
        lines.append(f"{row['knob']}: {_choices(row)} (default {row['default']}){guard}\n"
                     f"    {row['what']}")
    return "\n".join(lines)
