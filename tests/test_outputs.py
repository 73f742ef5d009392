"""What a search hands to machines and reviewers (tuner/driver/outputs.py): the MLflow links,
the --result-json document, the GitHub step summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.driver import outputs
from tuner.driver.ranking import Row
from tuner.driver.search import Outcome
from tuner.driver.space import parse_space

SPACE = parse_space("workload: tiny_cnn\nknobs: {batch_size: [16, 32]}\n", source="s.yaml")


def _row(number: int, sps: float, role: str = "sweep", status: str = "ok") -> Row:
    return Row(number=number, role=role, status=status, reason="boom" if status != "ok" else "",
               knobs={"batch_size": 16 * (number + 1)}, metrics={"samples_per_sec": sps,
                                                                  "speedup": sps / 10.0},
               violation=0.0, run_id=f"run{number}")


ROWS = [_row(0, 10.0, "baseline"), _row(1, 30.0), _row(2, 0.0, status="failed"), _row(3, 20.0)]


def test_the_review_lines_link_the_search_and_its_best_trials() -> None:
    outcome = Outcome("s", ROWS, "", None, mlflow_ids=("7", "parent"))
    lines = outputs.review_lines("sqlite:////x/mlflow.db", "s", outcome)
    assert lines[0] == ("review: mlflow ui --backend-store-uri sqlite:////x/mlflow.db  "
                        "(experiment s)")
    assert lines[1] == ("  this search: http://127.0.0.1:5000/#/experiments/7/runs/parent"
                        "?workflowType=machine_learning")
    assert lines[2] == ("  baseline and best trials compared: http://127.0.0.1:5000/#/compare-runs"
                        "?runs=[%22run0%22,%22run1%22,%22run3%22]&experiments=[%227%22]"
                        "&workflowType=machine_learning")  # the failed trial left out
    remote = outputs.review_lines("http://me:secret@mlflow:5000/", "s", outcome)
    assert "secret" not in "".join(remote) and "#/experiments/7/runs/parent" in remote[1]
    assert outputs.review_lines("sqlite:///m.db", "s", Outcome("s", ROWS, "", None)) == [
        "review: mlflow ui --backend-store-uri sqlite:///m.db  (experiment s)"]  # MLflow down


def test_the_result_json_and_the_step_summary(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = Outcome("s", ROWS, "", tmp_path / "best.yaml", launched=4)
    data = outputs.result_data(outcome, SPACE, 0, "review: ...")
    target = tmp_path / "result.json"
    outputs.write_result_json(target, data)
    read = json.loads(target.read_text())
    assert read["best"]["trial"] == 1 and read["best_speedup"] == 3.0
    assert read["trials"] == {"finished": 4, "started_by_this_search": 4,
                              "summary": "4 trials: 3 measured, 1 failed"}
    assert read["failures"] == [{"what": "failed: boom (trial 2)", "count": 1}]
    assert not list(tmp_path.glob("*.partial"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert outputs.append_step_summary(outcome, SPACE) == ""
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert outputs.append_step_summary(outcome, SPACE, ["REGRESSION: slower"]) == ""
    text = summary.read_text()
    assert text.startswith("## tuner: study s\n\n**REGRESSION: slower**")
    assert "| 1 | 1 | 30.00 |" in text
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no" / "summary.md"))
    assert "could not be written" in outputs.append_step_summary(outcome, SPACE)
