"""A search whose baseline cannot finish inside its time limit: it is not the end of the search.

Real parts: local Ray, SQLite, MLflow, trial processes whose steps really take 4 s.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuner.driver import study as st
from tuner.driver.cli import main
from tuner.driver.search import loop as search

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")

# every step (timed, warm-up, guard) sleeps 4 s: warm-up and one timed step alone pass 8 s
SPACE = """
study: slow_baseline
workload: {name: "faulty_workloads:slowed", options: {image_size: 8, delay_per_step_s: 4.0}}
knobs:
  batch_size: [8, 16]
baseline: {batch_size: 8}
budget: {trials: 1, timeout_s: 600}
measure: {warmup_steps: 1, timed_steps: 3, min_timed_steps: 2, max_timed_s: 60}
trial: {time_limit_s: 8}
guard: {steps: 1, batch_size: 4}
sampler: {name: random, seed: 0, priors: false}
"""


def test_a_baseline_out_of_time_runs_again_with_a_limit_from_its_steps(
        ray_local, workdir: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "PROGRESS_NOTE_S", 6.0)  # the "still running" line, sooner
    monkeypatch.setattr(search, "WAIT_SLICE_S", 2.0)
    space = workdir.parent / "slow.yaml"
    space.write_text(SPACE, encoding="utf-8")
    code = main(["search", "--space", str(space)])
    out = capsys.readouterr().out
    assert code == 0, out

    study = optuna.load_study(study_name="slow_baseline",
                              storage=f"sqlite:///{workdir / 'optuna.db'}")
    first, again = study.get_trials()  # the budget of 1 is met by the baseline that finished
    assert first.user_attrs[st.ROLE] == again.user_attrs[st.ROLE] == st.BASELINE
    assert first.state == TrialState.FAIL and first.user_attrs[st.STATUS] == "timeout"
    assert "killed at its time limit of 8 s, in " in first.user_attrs[st.REASON]
    limit = first.user_attrs[st.RUN_AGAIN]
    assert limit >= 60 and limit % 60 == 0
    assert "progress" in first.user_attrs[st.INFO]  # what the limit was sized from, kept
    assert again.state == TrialState.COMPLETE and again.user_attrs[st.STATUS] == "ok"
    assert again.user_attrs[st.METRICS]["samples_per_sec"] > 0
    assert ("the baseline ran out of time" in out
            and f"runs again with a time limit of {limit // 60:.0f}m00s" in out), out
    # "waits for room" when Ray's free-resource view still trails the killed trial's release
    assert re.search(rf"trial {again.number} (started|waits for room on this machine) "
                     rf"\(baseline, \d CPUs?, limit "
                     rf"{limit // 60:.0f}m00s\)", out), out
    # the long trial says where it is, not only that it runs
    assert re.search(r"trial 1 still running: \S+ of its \S+ limit; "
                     r"(building|warm-up|timed step|accuracy guard)", out), out
    assert "search stopped" not in out
