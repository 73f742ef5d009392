"""One self-contained `report.html` per search: the summary table, what each knob did, the best
config, the failures and every figure (embedded), readable without MLflow or a server, written
beside the best config and logged to the search's MLflow run.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver.effects import knob_effects, never_apart

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.worse { color: #b00; } .better { color: #070; } .noise { color: #777; }
"""


def _cell(value: Any, numeric: bool = False) -> str:
    return f'<td class="n">{html.escape(str(value))}</td>' if numeric else \
        f"<td>{html.escape(str(value))}</td>"


def _table(head: list[str], rows: list[list[tuple[Any, bool]]]) -> str:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in head)
    body = "".join("<tr>" + "".join(_cell(v, n) for v, n in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _ranked(all_rows: list[rk.Row], objective: str, currency: str, top: int) -> str:
    base = rk.baseline_row(all_rows)
    rows = []
    for rank, row in enumerate(rk.ranked(all_rows, objective)[:top], 1):
        m = row.metrics
        rows.append([(rank, True), (row.number, True), (f"{row.samples_per_sec:,.2f}", True),
                     (f"{m.get(mx.SPEEDUP, 0.0):.2f}x", True),
                     (f"{m.get(mx.SAMPLES_PER_DOLLAR, 0.0):,.0f}", True),
                     (f"{m.get(mx.STEP_TIME_CV, 0.0):.1%}", True),
                     (rp.changes(row.knobs, base.knobs if base else None), False)])
    return _table(["rank", "trial", "samples/s", "speed-up", f"samples/{currency}", "cv",
                   "config (changes from the baseline)"], rows)


def _effects(all_rows: list[rk.Row], objective: str, knob_names: list[str]) -> str:
    effects = knob_effects(all_rows, objective)
    if not effects:
        return "<p>No two measured trials differ in one knob only yet.</p>"
    rows = []
    for effect in effects:
        verdict = ("within noise" if effect.within_noise else
                   "better" if effect.ratio > 1 else "worse")
        rows.append([(effect.knob, False), (effect.value, False), (effect.best_value, False),
                     (f"{effect.ratio:.2f}x", True), (f"{effect.spread:.0%}", True),
                     (f"{effect.trial} vs {effect.against}", False), (verdict, False)])
    text = _table(["knob", "value", "best's value", "ratio", "spread", "trials", "verdict"],
                  rows)
    untested = never_apart(all_rows, objective, knob_names)
    if untested:
        text += f"<p>Never measured one knob apart: {html.escape(', '.join(untested))}</p>"
    return text


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.stem)}" '
            f'src="data:image/png;base64,{data}"></figure>')


def render(study: str, all_rows: list[rk.Row], objective: str, currency: str, max_cv: float,
           knob_names: list[str], best_yaml: str | None, figures: list[Path],
           review: str = "") -> str:
    """The report's HTML text."""
    failures = rp.failures_by_reason(all_rows)
    cheapest = rp.cheapest_line(all_rows, currency)
    parts = [
        f"<!doctype html><html lang=en><meta charset=utf-8><title>tuner: {html.escape(study)}"
        f"</title><style>{STYLE}</style><body>",
        f"<h1>Study {html.escape(study)}</h1>",
        f"<p>{html.escape(rp.count_line(all_rows, max_cv))}. Written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</p>",
        f"<h2>Top configs by {html.escape(objective)}</h2>",
        _ranked(all_rows, objective, currency, 15),
    ]
    found = rp.findings(all_rows, objective)
    if found:
        parts += ["<ul>"] + [f"<li>{html.escape(line)}</li>" for line in found] + ["</ul>"]
    if cheapest:
        parts.append(f"<p>{html.escape(cheapest)}</p>")
    parts += ["<h2>What each knob did</h2>", _effects(all_rows, objective, knob_names)]
    parts += ["<h2>Best config</h2>",
              f"<pre>{html.escape(best_yaml)}</pre>" if best_yaml else
              "<p>No feasible measured trial yet.</p>"]
    if failures:
        parts += ["<h2>Failed, skipped and noisy trials</h2><ul>"]
        parts += [f"<li>{count} x {html.escape(text)}</li>" for text, count in failures]
        parts += ["</ul><p>A failed trial's traceback: <code>tuner log --study "
                  f"{html.escape(study)} --trial N</code>, or trial.log in its MLflow run.</p>"]
    if figures:
        parts += ["<h2>Figures</h2>"] + [_figure(path) for path in figures if path.exists()]
    if review:
        parts.append(f"<p>{html.escape(review)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
