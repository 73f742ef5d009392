"""A search's outcome for machines: `--result-json PATH` (what a CI step or a scheduler's
script reads instead of parsing the console) and, where `$GITHUB_STEP_SUMMARY` is set, the
markdown summary a GitHub Actions run shows on its page.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver.browse import row_data
from tuner.driver.search import Outcome
from tuner.driver.space import Space
from tuner.driver.stores import redact
from tuner.errors import UserError

STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
# MLflow 3's UI opens in its GenAI view in a fresh browser; this asks for the model-training one
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
COMPARED = 10  # trials in the comparison link: the baseline and the best ones


def review_lines(tracking_uri: str, experiment: str, outcome: Outcome,
                 objective: str = mx.SAMPLES_PER_SEC) -> list[str]:
    """Where to look at the search's MLflow records: the command that serves them, then direct
    links to the search's run (its figures and plots) and to its best trials side by side (a
    fresh browser otherwise lands on the experiment's collapsed runs table)."""
    if tracking_uri.startswith(("http:", "https:")):
        base = redact(tracking_uri).rstrip("/")
        lines = [f"review: open {base} (experiment {experiment})"]
    else:
        base = LOCAL_UI
        lines = [f"review: mlflow ui --backend-store-uri {redact(tracking_uri)}  "
                 f"(experiment {experiment})"]
    if outcome.mlflow_ids is None or not outcome.mlflow_ids[1]:
        return lines
    experiment_id, run_id = outcome.mlflow_ids
    lines.append(f"  this search: {base}/#/experiments/{experiment_id}/runs/{run_id}"
                 f"?{MODEL_TRAINING_VIEW}")
    base_row = rk.baseline_row(outcome.rows)
    compared = ([base_row] if base_row else []) + rk.ranked(outcome.rows, objective)
    run_ids = list(dict.fromkeys(row.run_id for row in compared if row.run_id))[:COMPARED]
    if len(run_ids) > 1:
        lines.append(f"  baseline and best trials compared: {base}/#/compare-runs?runs="
                     f"{_json_in_url(run_ids)}&experiments={_json_in_url([experiment_id])}"
                     f"&{MODEL_TRAINING_VIEW}")
    return lines


def _json_in_url(items: list[str]) -> str:
    """A JSON list as MLflow's UI reads it from a link, quotes escaped (a terminal ends a link
    at a bare quote)."""
    return urllib.parse.quote(json.dumps(items, separators=(",", ":")), safe="[],")


def check_result_path(path: Path | None) -> None:
    """Refused before the search starts: an hour of measuring must not end in 'cannot write'."""
    if path is None:
        return
    folder = path.expanduser().resolve().parent
    if path.is_dir():
        raise UserError(f"--result-json: {path} is a folder; give a file path, e.g. "
                        f"{path / 'result.json'}")
    if not folder.is_dir():
        raise UserError(f"--result-json: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--result-json: folder {folder} is not writable")


def result_data(outcome: Outcome, space: Space, exit_code: int, review: str,
                verdict: list[str] | None = None) -> dict[str, Any]:
    """The outcome as plain data: figures, the best config and where things are."""
    rows = outcome.rows
    base = rk.baseline_row(rows)
    best = rk.ranked(rows, space.objective)
    data: dict[str, Any] = {
        "study": outcome.study, "exit_code": exit_code, "objective": space.objective,
        "trials": {"finished": len(rows), "started_by_this_search": outcome.launched,
                   "summary": rp.count_line(rows, space.max_cv)},
        "baseline_samples_per_sec": base.samples_per_sec if base else None,
        "best": row_data(best[0]) if best else None,
        "best_speedup": best[0].metrics.get(mx.SPEEDUP) if best else None,
        "best_config_file": str(outcome.best_path) if outcome.best_path else None,
        "report": str(outcome.report_path) if outcome.report_path else None,
        "review": review, "records_missing": outcome.records_missing,
        "failures": [{"what": text, "count": count}
                     for text, count in rp.failures_by_reason(rows)],
    }
    if verdict is not None:
        data["verdict"] = verdict
    return data


def write_result_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    partial.replace(path)  # whole or absent, never half-written


def append_step_summary(outcome: Outcome, space: Space, verdict: list[str] | None = None) -> str:
    """Appends to $GITHUB_STEP_SUMMARY when set; returns a warning, or ''."""
    target = os.environ.get(STEP_SUMMARY)
    if not target:
        return ""
    text = f"## tuner: study {outcome.study}\n\n"
    if verdict:
        text += "\n".join(f"**{line}**" if i == 0 else line for i, line in enumerate(verdict))
        text += "\n\n"
    text += rp.markdown_summary(outcome.rows, space.objective, space.cost.currency,
                                space.objectives).replace("# Top configs", "### Top configs", 1)
    try:
        with open(target, "a", encoding="utf-8") as summary:
            summary.write(text + "\n")
    except OSError as error:
        return f"warning: ${STEP_SUMMARY} ({target}) could not be written: {error.strerror}"
    return ""
