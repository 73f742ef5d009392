"""The three example jobs (examples/jobs: a Transformer classifier with dict batches,
accumulation and clipping; a GAN with two optimizers; an ordinary script adapted in a handful
of lines), each tuned by a real `tuner search` and then run with its best config by
`tuner launch`, as the docs tell a user to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import EXAMPLES, ROOT
from optuna.trial import TrialState

from tuner.driver import study as st
from tuner.driver.cli import main

pytestmark = pytest.mark.slow  # a search each

JOBS = EXAMPLES / "jobs"


@pytest.mark.parametrize(("space", "job"), [
    ("text_classifier.yaml", "text_classifier.py"),
    ("gan.yaml", "gan.py"),
    ("tuned_script.yaml", "tuned_script.py"),
])
def test_an_example_job_is_tuned_then_launched_with_its_best(
        ray_local, workdir: Path, capsys, space: str, job: str) -> None:
    raw = yaml.safe_load((JOBS / space).read_text(encoding="utf-8"))
    if "script" in raw["workload"]:  # a path from the repository, where the docs run it
        raw["workload"]["script"] = str(ROOT / raw["workload"]["script"])
    raw["budget"] = {"trials": 2, "timeout_s": 300}
    raw["measure"] = {"warmup_steps": 1, "timed_steps": 4, "min_timed_steps": 3,
                      "max_timed_s": 3, "max_cv": 1.0}
    raw["guard"]["steps"] = 2
    path = workdir.parent / space
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["search", "--space", str(path)]) == 0
    out = capsys.readouterr().out
    trials = optuna.load_study(study_name=raw["study"],
                               storage=f"sqlite:///{workdir / 'optuna.db'}").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, out
    for trial in trials:  # measured at the job's marked steps, guarded by its reported loss
        assert trial.user_attrs[st.STATUS] == "ok", trial.user_attrs.get(st.REASON)
        # 4 timed steps, or 3 where 3 s ran out first (min_timed_steps: a busy machine)
        assert 3 <= len(trial.user_attrs["step_times_s"]) <= 4
        reports_per_step = 2 if job == "text_classifier.py" else 1  # its accumulation
        assert len(trial.user_attrs["guard_losses"]) == 3 * reports_per_step
    best = workdir / "best" / f"{raw['study']}.yaml"
    assert best.is_file(), out
    launched = subprocess.run(
        [sys.executable, "-m", "tuner.driver.cli", "launch", str(best), "--",
         sys.executable, str(JOBS / job), "--epochs", "1", *(
             [] if job == "tuned_script.py" else ["--samples", "128"])],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert "Traceback" not in launched.stderr
