"""Where a running search stands: trials done and left, the time budget left, the best so far,
an estimate of the end, and each running trial's phase (building, compiling, step k of n,
guard). On a terminal it is a live footer under the trial lines (rich); in a log (cron,
systemd, CI: not a TTY) the same words join the periodic "still running" lines instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tuner.driver.search.standing import Standing

PLAIN_VARIABLE = "TUNER_PLAIN"  # set (to anything but 0): plain lines even on a terminal


def wanted(stream: Any = None) -> bool:
    """A live footer only on a terminal, and not when TUNER_PLAIN asks for plain lines."""
    stream = sys.stdout if stream is None else stream
    plain = os.environ.get(PLAIN_VARIABLE, "0") not in ("", "0")
    return not plain and bool(getattr(stream, "isatty", lambda: False)())


class LiveFooter:
    """A rich Live footer that redraws the standing (its clocks tick between updates); lines
    printed through `print` scroll above it."""

    def __init__(self, standing: Standing, file: Any = None) -> None:
        from rich.console import Console as RichConsole
        from rich.live import Live

        self.standing = standing
        self.console = RichConsole(highlight=False, file=file, force_terminal=file is not None)
        # redrawn by the search loop (every wait slice, every line), never by a thread of its
        # own: on a small machine a redraw a second steals time from the trial being timed
        self.live = Live(self, console=self.console, auto_refresh=False, transient=True,
                         redirect_stdout=False, redirect_stderr=False)

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text("\n".join(self.standing.lines()), style="dim")

    def start(self) -> None:
        self.live.start()

    def print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        self.refresh()

    def refresh(self) -> None:
        self.live.refresh()

    def stop(self) -> None:
        self.live.stop()


class Display:
    """Keeps the console's standing current as trials start and finish, and runs the footer
    on a terminal (for the default `print` only: a caller's own `out`, a test's or -q's, gets
    plain lines)."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.footer: LiveFooter | None = None

    @property
    def active(self) -> bool:
        return self.footer is not None

    def start(self, to_run: int, max_concurrent: int, timeout_s: float) -> None:
        standing = self.console.standing
        standing.to_run, standing.max_concurrent = to_run, max_concurrent
        standing.started = self.console.started
        standing.deadline = self.console.started + timeout_s
        if self.console.out is print and self.console.verbosity >= 0 and wanted():
            self.footer = LiveFooter(standing)
            self.footer.start()
            self.console.out = self.footer.print

    def stop(self) -> None:
        if self.footer is not None:
            self.footer.stop()
            self.console.out = print
            self.footer = None

    def trial_started(self, number: int, began: float, to_run: int) -> None:
        self.console.standing.running[number] = (began, "starting")
        self.console.standing.to_run = to_run

    def trial_finished(self, number: int, began: float, now: float) -> None:
        standing = self.console.standing
        standing.running.pop(number, None)
        standing.done += 1
        standing.trial_durations_s.append(now - began)

    def told(self, to_run: int, best: Any) -> None:
        """After a result: the count to run (a retry adds one) and the best row so far."""
        self.console.standing.to_run = to_run
        if best is not None:
            self.console.standing.best = (f"{best.samples_per_sec:,.2f} samples/s "
                                          f"(trial {best.number})")

    def phases(self, running: dict[int, tuple[float, str]]) -> None:
        self.console.standing.running = dict(running)
        if self.footer is not None:
            self.footer.refresh()
