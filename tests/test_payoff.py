"""Compile cost accounted (issue 23): the steps after which compiling pays off against the
eager twin, and the throughput of a job of N steps with its compile."""

from __future__ import annotations

import math
from types import SimpleNamespace

import optuna
import pytest
from conftest import SPACES

from tuner import metrics as mx
from tuner.driver import payoff
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.ranking import Row
from tuner.driver.search.results import Running, compile_figures
from tuner.driver.space import load_space
from tuner.errors import SpaceError

EAGER = {"batch_size": 32, "compile": "none"}
COMPILED = {"batch_size": 32, "compile": "inductor", "compile_mode": "default"}


def _row(number: int, knobs: dict, step_s: float, compile_s: float = 0.0) -> Row:
    return Row(number, "sweep", "ok", "", knobs,
               {mx.SAMPLES_PER_SEC: 32 / step_s, mx.STEP_TIME_MEDIAN_S: step_s,
                mx.COMPILE_S: compile_s}, 0.0)


def test_a_job_pays_its_compile_over_its_steps() -> None:
    # 10 samples/s at 1 s a step; a 30 s compile over 100 steps: 100 s of steps + 30
    assert payoff.job_samples_per_sec(10.0, 1.0, 30.0, 100) == pytest.approx(10 * 100 / 130)
    assert payoff.job_samples_per_sec(10.0, 1.0, 0.0, 5) == 10.0  # eager: nothing to pay


def test_compile_pays_off_after_compile_time_over_the_step_saved() -> None:
    eager, compiled = _row(1, EAGER, 0.50), _row(2, COMPILED, 0.40, compile_s=30.0)
    found = payoff.payoff_of(compiled, [eager, compiled])
    assert found is not None and found.eager.number == 1
    assert found.steps == pytest.approx(300)  # 30 s / 0.1 s a step
    assert found.describe() == ("compile pays off after ~300 steps: trial 2 (inductor default, "
                                "compile 30.0 s) is 0.1 s a step faster than trial 1 (eager)")
    slower = _row(3, COMPILED, 0.6, compile_s=30.0)
    never = payoff.payoff_of(slower, [eager])
    assert never is not None and math.isinf(never.steps)
    assert never.describe().startswith("compile never pays off: trial 3")
    assert payoff.payoff_of(compiled, [compiled]) is None  # no eager twin measured
    assert payoff.payoff_of(eager, [eager]) is None  # not compiled
    table = rp.format_table([_row(0, EAGER, 0.5), compiled], "samples_per_sec")
    assert "compile pays off after ~300 steps: trial 2" in table


def test_the_driver_adds_the_payoff_and_the_job_figure_to_a_compiled_trial() -> None:
    """Real Optuna storage (in memory): the eager twin is a finished trial of the study."""
    space = load_space(SPACES / "quick_train.yaml", [
        "knobs.compile=[none, inductor]", "measure.job_steps=100",
        "objective=job_samples_per_sec"])
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        value=64.0, params={}, distributions={}, user_attrs={
            st.STATUS: "ok", st.KNOBS: {**space.full_config({}), "compile": "none"},
            st.METRICS: {mx.SAMPLES_PER_SEC: 64.0, mx.STEP_TIME_MEDIAN_S: 0.5}}))
    knobs = {**space.full_config({}), "compile": "inductor", "compile_mode": "default"}
    running = Running(trial=SimpleNamespace(number=1), knobs=knobs, role="sweep", key="")
    figures = compile_figures(study, space, running, {
        mx.SAMPLES_PER_SEC: 80.0, mx.STEP_TIME_MEDIAN_S: 0.4, mx.COMPILE_S: 20.0})
    assert figures[mx.COMPILE_PAYOFF_STEPS] == pytest.approx(200)
    assert figures[mx.COMPILE_STEP_SAVING_S] == pytest.approx(0.1)
    assert figures[mx.JOB_SAMPLES_PER_SEC] == pytest.approx(80 / (1 + 20 / 40))


def test_the_job_objective_needs_the_jobs_length() -> None:
    with pytest.raises(SpaceError, match="measure.job_steps: missing; objective "
                                         "job_samples_per_sec needs"):
        load_space(SPACES / "quick_train.yaml", ["objective=job_samples_per_sec"])


def test_the_trial_line_says_when_compiling_pays() -> None:
    from tuner.driver.search.console import Console
    from tuner.trial import OK, TrialResult

    base = {mx.SAMPLES_PER_SEC: 10.0, mx.SAMPLES_PER_DOLLAR: 1e5, mx.STEP_TIME_CV: 0.05,
            mx.SPEEDUP: 1.2, mx.COMPILE_S: 74.1}
    line = Console(print, "USD").result_line(9, TrialResult(status=OK), {
        **base, mx.COMPILE_STEP_SAVING_S: -0.04}, 0.0, None)
    assert "compile 74.1 s (never pays off: no faster a step than its eager twin)" in line
    line = Console(print, "USD").result_line(9, TrialResult(status=OK), {
        **base, mx.COMPILE_STEP_SAVING_S: 0.25, mx.COMPILE_PAYOFF_STEPS: 296.4}, 0.0, None)
    assert "compile 74.1 s (pays off after ~297 steps)" in line
