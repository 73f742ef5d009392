"""The search's standing (done, left, budget, best, ETA, running phases) and its live footer
on a terminal; plain lines elsewhere (tuner/driver/search/live.py, standing.py)."""

from __future__ import annotations

import io

import pytest

from tuner.driver.search.console import Console
from tuner.driver.search.live import Display, LiveFooter, wanted
from tuner.driver.search.standing import Standing


def test_the_standing_says_done_left_best_budget_and_eta() -> None:
    standing = Standing(done=2, to_run=8, started=0.0, deadline=1800.0, max_concurrent=2,
                        best="12.30 samples/s (trial 4)", trial_durations_s=[60.0, 120.0])
    standing.running = {5: (500.0, "timed step 3 of 20, 1.2 s a step"), 6: (590.0, "")}
    assert standing.summary(now=600.0) == ("2/8 trials done, best 12.30 samples/s (trial 4), "
                                           "budget 20m00s left, ETA ~4m30s")
    assert standing.lines(now=600.0)[1:] == [
        "  trial 5 running 1m40s: timed step 3 of 20, 1.2 s a step", "  trial 6 running 10s"]
    assert standing.eta_s(now=1790.0) == 10.0  # never past the time budget
    assert Standing(to_run=3, deadline=60.0).eta_s(now=0.0) is None  # nothing finished yet


def test_a_budget_of_time_only_counts_up() -> None:
    from tuner.driver.search.standing import UNCOUNTED

    standing = Standing(done=3, to_run=UNCOUNTED, started=0.0, deadline=1800.0,
                        trial_durations_s=[60.0])
    assert standing.summary(now=600.0) == "3 trials done, budget 20m00s left, ETA ~20m00s"
    assert Console.counter(4, UNCOUNTED) == "[4]" and Console.counter(4, 12) == "[ 4/12]"


def test_a_footer_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("TUNER_PLAIN", raising=False)
    assert wanted(Terminal()) and not wanted(io.StringIO())
    monkeypatch.setenv("TUNER_PLAIN", "1")
    assert not wanted(Terminal())
    # a caller's own out (a test's, a library user's) gets plain lines even on a terminal
    lines: list[str] = []
    console = Console(lines.append, "USD", study="s")
    display = Display(console)
    display.start(to_run=3, max_concurrent=1, timeout_s=60)
    assert not display.active and console.out == lines.append


def test_the_footer_redraws_under_the_lines() -> None:
    screen = io.StringIO()
    standing = Standing(to_run=3, deadline=1e12)
    footer = LiveFooter(standing, file=screen)
    footer.start()
    standing.running = {0: (0.0, "compiling")}
    footer.print("[1/3] trial 0 started (baseline)")
    footer.stop()
    text = screen.getvalue()
    assert "[1/3] trial 0 started (baseline)" in text
    assert "0/3 trials done" in text and "trial 0 running" in text and "compiling" in text


def test_quiet_keeps_failures_and_verbose_adds_the_log() -> None:
    from tuner.trial import TrialResult

    failed = TrialResult(status="failed", reason="RuntimeError: boom",
                         info={"traceback": "Traceback (most recent call last):\n  boom"})
    quiet: list[str] = []
    console = Console(quiet.append, "USD", study="s", verbosity=-1)
    console.detail("[1/3] trial 0 started")
    console.out(console.result_line(0, failed, {}, 0.0, None))
    console.failed_log(0, failed)
    assert len(quiet) == 1 and "trial 0 failed: RuntimeError: boom (its log: tuner log " \
        "--study s --trial 0" in quiet[0]
    loud: list[str] = []
    console = Console(loud.append, "USD", study="s", verbosity=1)
    console.failed_log(0, failed)
    assert loud == ["    | Traceback (most recent call last):\n    |   boom"]
