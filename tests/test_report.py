"""The words of the tables and lines a search ends with (tuner/driver/report.py)."""

from __future__ import annotations


def test_a_trial_cut_short_by_its_time_limit_is_not_called_noisy() -> None:
    """A compiled trial that timed 1 step before its limit: 'too few timed steps', in the
    count, the failures and its console line, never 'noisy ... cv 0%' (README run, stop 27)."""
    from tuner.driver.ranking import Row
    from tuner.driver.report import count_line, failures_by_reason
    from tuner.driver.search.console import Console
    from tuner.trial import TrialResult

    metrics = {"samples_per_sec": 6.4, "samples_per_dollar": 64_000.0, "speedup": 3.3,
               "step_time_cv": 0.0, "timed_steps": 1.0, "measure_rounds": 1.0, "noisy": 1.0}
    note = ("timed 1 of 5 steps: one more would not have ended before the trial's time limit "
            "(fewer than measure.min_timed_steps=3: marked noisy)")
    row = Row(number=9, role="sweep", status="ok", reason="", knobs={"compile": "inductor"},
              metrics=metrics, violation=0.0, info={"note": note})
    assert count_line([row], 0.1) == ("1 trials: 0 measured, 1 with too few timed steps to "
                                      "rank (the time limit came first)")
    assert failures_by_reason([row])[0][0].startswith("too few timed steps: timed 1 of 5 steps")
    line = Console(print, "USD", min_timed_steps=3).result_line(
        9, TrialResult(status="ok", metrics=metrics), metrics, 0.0, None)
    assert "TOO FEW STEPS (1 timed, 3 needed: the time limit came first), never ranked" in line
