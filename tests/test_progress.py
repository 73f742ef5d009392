"""The trial process's progress file: written as it goes, read back after a kill."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner import progress as pg
from tuner.driver import limits
from tuner.trial import GuardSettings, MeasureSettings


def test_progress_is_read_back_with_the_steps_of_each_round(tmp_path: Path) -> None:
    path = tmp_path / pg.FILE_NAME
    clock = iter(range(100, 200)).__next__
    log = pg.ProgressLog(path, clock=lambda: float(clock()))
    log.phase(pg.BUILDING, started_at=95.0, batch_size=128, planned_steps=5)
    log.phase(pg.WARMUP, build_s=2.0)
    log.step("warmup", 60.0)
    log.phase(pg.TIMING)
    for seconds in (50.0, 70.0, 52.0):
        log.step("timed", seconds)
    log.phase(pg.WARMUP, build_s=2.0)  # a second round
    log.step("warmup", 51.0)
    log.phase(pg.TIMING)
    log.step("timed", 51.0)
    with open(path, "a", encoding="utf-8") as torn:  # a kill mid-write
        torn.write('{"step": "tim')
    progress = pg.read_progress(path)
    assert progress is not None
    assert (progress.phase, progress.batch_size, progress.planned_steps) == (pg.TIMING, 128, 5)
    assert progress.rounds == [[50.0, 70.0, 52.0], [51.0]] and progress.timed_steps == 4
    assert progress.warmup_times_s == [60.0, 51.0] and progress.build_s == 2.0
    assert progress.kept_round() == [50.0, 70.0, 52.0]
    assert progress.describe(200.0) == "timed step 2 of 5, round 2, 51 s a step"
    metrics = pg.partial_metrics(progress)
    assert metrics["samples_per_sec"] == pytest.approx(128 / 52.0)
    assert metrics["timed_steps"] == 3 and metrics["measure_rounds"] == 2
    assert metrics["partial"] == 1
    assert pg.read_progress(tmp_path / "none.jsonl") is None


def test_a_killed_baseline_gets_a_limit_sized_from_its_steps() -> None:
    """cpu_train.yaml's baseline on a machine 3.5x slower than its 360-s limit was sized for:
    killed in its first timed step after a 190-s warm-up step."""
    measure = MeasureSettings(warmup_steps=1, timed_steps=5, min_timed_steps=3, max_timed_s=45)
    guard = GuardSettings(steps=3, batch_size=4)
    progress = {"step_estimate_s": 190.0, "warmup_times_s": [190.0], "build_s": 3.0,
                "startup_s": 8.0, "batch_size": 128}
    need = limits.needed_s(progress, measure, guard)
    assert need == pytest.approx(8 + 3 + 190 + 3 * 190 + 3 + 4 * 190 * 0.1)
    limit = limits.derived_limit_s(progress, measure, guard, old_limit_s=360)
    assert limit % 60 == 0 and limit >= 1.5 * need
    # nothing timed at all (killed while building): only the growth rule
    assert limits.derived_limit_s({}, measure, guard, old_limit_s=360) == 540
