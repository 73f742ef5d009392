"""Where a running search stands: trials done and left, the time budget left, the best so far,
an estimate of the end, and each running trial's phase. The live footer (`live`) and the
periodic progress lines (`console`) both say it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

UNCOUNTED = 10**6  # trials to run of a budget of time only: until the time is used


def counted(count: int, noun: str) -> str:
    """`1 round`, `3 rounds`: a count with its noun, plural when it is not one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """`42s`, `4m15s`, `1h05m`: how long, at a glance."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class Standing:
    """The search's state as the loop last saw it; times are time.monotonic()."""

    done: int = 0
    to_run: int = 0
    started: float = field(default_factory=time.monotonic)
    deadline: float = 0.0
    max_concurrent: int = 1
    best: str = ""  # "12.30 samples/s (trial 4)"
    trial_durations_s: list[float] = field(default_factory=list)
    running: dict[int, tuple[float, str]] = field(default_factory=dict)  # number: (start, phase)

    def eta_s(self, now: float) -> float | None:
        """Seconds to the end: the trials left at the mean trial time so far, side by side as
        the space allows, never past the time budget. None before a trial has finished."""
        if not self.trial_durations_s:
            return None
        left = max(0, self.to_run - self.done)
        mean = sum(self.trial_durations_s) / len(self.trial_durations_s)
        waves = -(-left // max(1, self.max_concurrent))
        return min(waves * mean, max(0.0, self.deadline - now))

    def summary(self, now: float | None = None) -> str:
        """`5/14 trials done, best 12.30 samples/s (trial 4), budget 22m10s left, ETA ~31m`."""
        now = time.monotonic() if now is None else now
        parts = [f"{self.done} trials done" if self.to_run >= UNCOUNTED
                 else f"{self.done}/{self.to_run} trials done"]
        if self.best:
            parts.append(f"best {self.best}")
        parts.append(f"budget {duration(max(0.0, self.deadline - now))} left")
        eta = self.eta_s(now)
        if eta is not None:
            parts.append(f"ETA ~{duration(eta)}")
        return ", ".join(parts)

    def lines(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        lines = [f"[{duration(now - self.started)}] {self.summary(now)}"]
        for number, (began, phase) in sorted(self.running.items()):
            lines.append(f"  trial {number} running {duration(now - began)}"
                         + (f": {phase}" if phase else ""))
        return lines
