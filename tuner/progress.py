"""What a trial process has done so far, streamed to a file beside its result.

The trial process appends one JSON line per phase it enters and per step it times; its
supervisor reads the file while it runs (to say "step 3 of 5" in the search's progress line)
and after killing it at its time or memory limit (so the steps it timed are kept, not lost with
the process). Plain files and the standard library only: both sides read and write it.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tuner import metrics as mx
from tuner.stats import step_stats

BUILDING, WARMUP, TIMING, GUARD = "building", "warm-up", "timing", "guard"
FILE_NAME = "progress.jsonl"  # in the trial's folder, beside its result
WRITE_THROUGH_S = 0.05  # a step this long reaches the file at once
BATCH_S = 0.5  # quicker steps reach it once they add up to this


def progress_key(placement_key: str) -> str:
    """Where a running trial's phase is published for the driver (Ray's key-value store)."""
    return f"{placement_key}:progress"


class ProgressLog:
    """The trial process's side. A phase is written through at once; a step is written through
    when it took 50 ms or more (the write costs microseconds: nothing beside such a step), and
    quicker steps are batched until they add up to half a second, so a process killed or hung
    right after a step has it on disk while millisecond steps pay no write each."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._clock = clock
        self._pending_s = 0.0  # duration of the steps written but not yet flushed

    def phase(self, name: str, **fields: Any) -> None:
        self._write({"phase": name, "at": self._clock(), **fields})
        self._flush()

    def step(self, kind: str, seconds: float) -> None:
        """`kind`: "warmup" or "timed"; timed steps belong to the latest round."""
        self._write({"step": kind, "s": seconds})
        self._pending_s += seconds
        if seconds >= WRITE_THROUGH_S or self._pending_s >= BATCH_S:
            self._flush()

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")

    def _flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        self._pending_s = 0.0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class Progress:
    """The supervisor's side: what the trial process had done when last written."""

    phase: str = ""
    phase_started_at: float = 0.0  # epoch seconds
    started_at: float = 0.0  # when the trial process began its work (after its imports)
    batch_size: int = 0
    planned_steps: int = 0  # measure.timed_steps
    build_s: float = 0.0
    warmup_times_s: list[float] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)  # timed steps of each round

    @property
    def timed_steps(self) -> int:
        return sum(len(steps) for steps in self.rounds)

    def kept_round(self) -> list[float]:
        """The round a partial figure is read from: the steadiest with two or more steps,
        else the longest (as the trial itself keeps its steadiest round)."""
        candidates = [steps for steps in self.rounds if len(steps) >= 2]
        if candidates:
            return min(candidates, key=lambda steps: step_stats(steps).cv)
        return max(self.rounds, key=len, default=[])

    def step_estimate_s(self, now: float) -> float:
        """A step's duration as far as known: the timed median, else the last warm-up step,
        else (killed in its first step) at least the time spent in the phase so far."""
        timed = [s for steps in self.rounds for s in steps]
        if timed:
            return statistics.median(timed)
        if self.warmup_times_s:
            return self.warmup_times_s[-1]
        return max(0.0, now - self.phase_started_at) if self.phase in (WARMUP, TIMING) else 0.0

    def describe(self, now: float) -> str:
        """Where the trial is, in a few words: "step 3 of 5 (55 s a step)"."""
        if self.phase == BUILDING:
            return f"building the model and data ({_seconds(now - self.phase_started_at)} so far)"
        if self.phase == WARMUP:
            done = len(self.warmup_times_s)
            return (f"warm-up step {done + 1} (compiling, where it compiles; "
                    f"{_seconds(now - self.phase_started_at)} in warm-up)")
        if self.phase == TIMING:
            current = self.rounds[-1] if self.rounds else []
            pace = f", {_seconds(statistics.median(current))} a step" if current else ""
            again = f", round {len(self.rounds)}" if len(self.rounds) > 1 else ""
            return f"timed step {len(current) + 1} of {self.planned_steps}{again}{pace}"
        if self.phase == GUARD:
            return f"accuracy guard ({_seconds(now - self.phase_started_at)} so far)"
        return "starting (importing torch)"


def read_progress(path: Path) -> Progress | None:
    """The progress a trial process wrote, or None if it wrote none. A line torn by a kill is
    ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    progress = Progress()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "phase" in record:
            progress.phase = record["phase"]
            progress.phase_started_at = record.get("at", 0.0)
            progress.build_s = float(record.get("build_s", progress.build_s))
            if record["phase"] == BUILDING:
                progress.started_at = record.get("started_at", progress.phase_started_at)
                progress.batch_size = int(record.get("batch_size", 0))
                progress.planned_steps = int(record.get("planned_steps", 0))
            elif record["phase"] == TIMING:
                progress.rounds.append([])
        elif record.get("step") == "warmup":
            progress.warmup_times_s.append(float(record["s"]))
        elif record.get("step") == "timed":
            if not progress.rounds:
                progress.rounds.append([])
            progress.rounds[-1].append(float(record["s"]))
    return progress if progress.phase else None


def partial_metrics(progress: Progress) -> dict[str, float]:
    """Figures from the steps timed before a kill: what was measured is kept. Empty when no
    step was timed."""
    steps = progress.kept_round()
    metrics: dict[str, float] = {"warmup_s": sum(progress.warmup_times_s),
                                 "model_build_s": progress.build_s}
    if not steps:
        return metrics
    stats = step_stats(steps)  # the same statistics a completed trial reports
    metrics.update({
        "partial": 1.0,  # from a trial cut short: never ranked (its status is not ok)
        mx.STEP_TIME_MEDIAN_S: stats.median_s,
        mx.STEP_TIME_IQR_S: stats.iqr_s,
        mx.STEP_TIME_CV: stats.cv,
        mx.TIMED_STEPS: float(len(steps)),
        mx.MEASURE_ROUNDS: float(len(progress.rounds)),
    })
    if progress.batch_size and stats.median_s > 0:
        metrics[mx.SAMPLES_PER_SEC] = progress.batch_size / stats.median_s
    return metrics


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
