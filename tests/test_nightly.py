"""`tuner nightly` for real: consecutive nights of a small space through real Ray, SQLite
storage and MLflow; the second warm-started from the first and compared with it; an injected
slowdown (a workload option that really sleeps in every step's data loading) caught as a
regression with exit code 4; no slowdown, no alarm."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tuner.driver import nightly
from tuner.driver import study as st
from tuner.driver.cli import main
from tuner.errors import REGRESSION_EXIT_CODE

# A fixed 50 ms per step makes the batch size decide throughput (256 is ~10x 16) and keeps the
# champion's speed-up far from the threshold on a noisy machine; 2 ms more per sample (the
# injected slowdown) brings it down to ~2x.
SPACE = """
study: nightly_demo
workload: {name: "faulty_workloads:slowed", options: {image_size: 16, delay_per_step_s: 0.05}}
knobs:
  batch_size: [16, 64, 256]
baseline: {batch_size: 16}
try_first: [{batch_size: 256}]
budget: {trials: 2, timeout_s: 300}
measure: {warmup_steps: 1, timed_steps: 4, min_timed_steps: 3, max_timed_s: 2, max_cv: 1.0}
trial: {time_limit_s: 60}
guard: {steps: 1, batch_size: 4}
nightly: {threshold: 0.5, warm_start: 2}
sampler: {name: random, seed: 0}
"""


def _night(space: Path, date: str, *extra: str) -> list[str]:
    return ["nightly", "--space", str(space), "--date", date, *extra]


@pytest.mark.slow
def test_nights_are_warm_started_compared_and_a_slowdown_is_an_alarm(
        ray_local, workdir: Path, capsys) -> None:
    space = workdir.parent / "nightly_demo.yaml"
    space.write_text(SPACE, encoding="utf-8")

    assert main(_night(space, "2026-11-20")) == 0  # the baseline and try_first's batch 256
    first = capsys.readouterr().out
    assert "first night with a champion" in first
    assert "tonight's champion: trial" in first

    assert main(_night(space, "2026-11-21")) == 0
    second = capsys.readouterr().out
    assert "queued 1 config(s) to try next (warm start" in second  # 256, also try_first
    assert "no regression: tonight's champion is" in second
    assert ("last night's champion (trial 1 of nightly_demo.night.2026-11-20) re-measured "
            "tonight as trial 1:") in second
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    night2 = optuna.load_study(study_name="nightly_demo.night.2026-11-21", storage=storage)
    champion = night2.trials[1]
    assert champion.user_attrs[st.ROLE] == nightly.CHAMPION
    assert champion.user_attrs[st.KNOBS]["batch_size"] == 256

    # the same night again: nothing re-measured, the verdict given again
    assert main(_night(space, "2026-11-21")) == 0
    again = capsys.readouterr().out
    assert "nothing to run" in again and "no regression" in again
    assert len(optuna.load_study(study_name="nightly_demo.night.2026-11-21",
                                 storage=storage).trials) == 2

    # a release that makes loading slower per sample: the champion's lead collapses
    code = main(_night(space, "2026-11-22", "--set",
                       "workload.options.delay_per_sample_s=0.002"))
    captured = capsys.readouterr()
    assert code == REGRESSION_EXIT_CODE, captured.out
    assert "REGRESSION: tonight's champion is" in captured.out
    assert captured.err.startswith("tuner: REGRESSION:")
    assert "nightly.threshold 0.5" in captured.err

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nightly_demo")  # one experiment for every night
    parents = [r for r in client.search_runs([experiment.experiment_id])
               if r.data.tags.get("tuner.kind") == "search"]
    verdicts = {r.data.tags["tuner.night"]: r.data.tags["tuner.verdict"] for r in parents}
    assert verdicts == {"2026-11-20": "first night", "2026-11-21": "ok",
                        "2026-11-22": "regression"}  # the repeated night made no new run
    last = next(r for r in parents if r.data.tags["tuner.night"] == "2026-11-22")
    assert last.data.tags["tuner.champion"] and last.data.metrics["champion_speedup"] > 0
    assert last.data.metrics["champion_speedup_vs_last_night"] < 0.5
    artifacts = {a.path for a in client.list_artifacts(last.info.run_id)}
    assert {"nightly.txt", "summary.md", "summary.txt", "fingerprint.json",
            "optimization_history.png"} <= artifacts
    trials = [r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("tuner.kind") == "trial"]
    assert len(trials) == 6  # two per night, each under its night's parent
    assert {r.data.tags["tuner.study"] for r in trials} == {
        f"nightly_demo.night.2026-11-2{day}" for day in (0, 1, 2)}


def test_knob_changes_are_listed_one_by_one() -> None:
    before = {"batch_size": 64, "memory_format": "channels_last", "compile": "none"}
    after = {"batch_size": 16, "memory_format": "channels_last", "compile": "inductor",
             "compile_mode": "default"}
    assert nightly.knob_changes(before, after) == [
        "batch_size 64 -> 16", "compile none -> inductor", "compile_mode (unset) -> default"]


def test_a_second_run_of_a_night_that_is_still_running_is_refused(tmp_path: Path) -> None:
    """On a shared Ray cluster the host lock does not see the other run: tonight's study's
    live session heartbeat does."""
    import time

    import pytest

    from tuner.driver import recovery as rc
    from tuner.driver.space import parse_space
    from tuner.errors import UserError

    space = parse_space(SPACE, default_study="nightly_demo")
    study = optuna.create_study(study_name="nightly_demo.night.2026-11-23",
                                storage=f"sqlite:///{tmp_path / 'o.db'}")
    night = nightly.Nightly(space, "2026-11-23")
    study.set_user_attr(rc.SESSION_PREFIX + "dead", {"host": "h", "pid": 1, "beat": 0.0,
                                                     "ended": False})
    night._refuse_overlap(study)  # a killed run's old heartbeat: no objection
    study.set_user_attr(rc.SESSION_PREFIX + "live", {"host": "node7", "pid": 4242,
                                                     "beat": time.time(), "ended": False})
    with pytest.raises(UserError, match=r"already running \(host node7, pid 4242\)"):
        night._refuse_overlap(study)


def test_a_bad_date_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(SPACE, encoding="utf-8")
    assert main(["nightly", "--space", str(space), "--date", "23/11/2026",
                 "--workdir", str(tmp_path / "w")]) == 2
    assert capsys.readouterr().err.strip() == (
        "tuner: error: --date: expected YYYY-MM-DD, got '23/11/2026'")
    assert not (tmp_path / "w").exists()


def _rows(pairs: list[tuple[float, float]]) -> list:
    """Tonight: baseline 16, last night's champion 256 re-measured, a 64 that measured
    faster once, then confirming rounds of 64 and 256 (speeds in `pairs`)."""
    from tuner.driver.ranking import Row

    def row(number: int, batch: int, speed: float, role: str, pair: str | None = None) -> Row:
        return Row(number=number, role=role, status="ok", reason="", knobs={"batch_size": batch},
                   metrics={"samples_per_sec": speed, "speedup": speed / 10.0}, violation=0.0,
                   pair=pair, confirms=None if pair is None else {64: 2, 256: 1}[batch])

    rows = [row(0, 16, 10.0, st.BASELINE), row(1, 256, 30.0, nightly.CHAMPION),
            row(2, 64, 33.0, "sampler")]
    for round_, (fast, champion) in enumerate(pairs):
        rows += [row(3 + 2 * round_, 64, fast, st.CONFIRM, f"6:{round_}"),
                 row(4 + 2 * round_, 256, champion, st.CONFIRM, f"6:{round_}")]
    return rows


def test_a_tie_with_last_nights_champion_is_not_a_change() -> None:
    """Issue 23: night 2 crowned another config on a single measurement, and said "best config
    changed": noise. The pairs decide; a tie keeps the champion."""
    from tuner.driver.ranking import Row

    last = [Row(0, st.BASELINE, "ok", "", {"batch_size": 16}, {"samples_per_sec": 10.0,
                                                               "speedup": 1.0}, 0.0),
            Row(1, "sampler", "ok", "", {"batch_size": 256}, {"samples_per_sec": 30.0,
                                                              "speedup": 3.0}, 0.0)]
    tied = nightly.compare(_rows([(31.0, 30.0), (29.0, 30.5), (30.8, 30.2)]), last,
                           "night-1", "samples_per_sec", 0.5)
    assert tied.tonight is not None and tied.tonight.knobs == {"batch_size": 256}
    assert not any(line.startswith("best config changed") for line in tied.lines), tied.lines
    assert any("named the incumbent (last night's champion: a tie is not a change)" in line
               for line in tied.lines), tied.lines

    changed = nightly.compare(_rows([(39.0, 30.0), (40.0, 30.5), (38.5, 29.8)]), last,
                              "night-1", "samples_per_sec", 0.5)
    assert changed.tonight is not None and changed.tonight.knobs == {"batch_size": 64}
    [line] = [line for line in changed.lines if line.startswith("best config changed")]
    assert line.startswith("best config changed (by pairs, 1.30x last night's champion, 95% "
                           "interval 1.2"), line
    assert line.endswith("batch_size 256 -> 64")
