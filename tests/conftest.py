"""Shared fixtures: one real local Ray for the whole session, and the paths of shipped files."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SPACES = ROOT / "search_spaces"

EXAMPLES = ROOT / "examples"

# Trial processes (started by Ray workers) must import tests/faulty_workloads.py and the
# example jobs (examples/jobs).
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(TESTS), str(EXAMPLES)]
    + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
sys.path.insert(0, str(TESTS))
sys.path.insert(1, str(EXAMPLES))
# Searches started by tests take their own host lock, not the one a developer's search holds.
os.environ.setdefault("TUNER_HOST_LOCK",
                      str(Path(tempfile.gettempdir()) / f"tuner-tests-{os.getpid()}.lock"))


def live_trial_processes(marker: str = "tuner-trial-") -> list[str]:
    """Command lines of live trial processes (read from /proc; zombies left out)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (cmdline.parent / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if "tuner.worker" in args and marker in args and state != "Z":
            found.append(args)
    return found


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray, started once: each `tuner search` in the session reuses it. It declares
    one GPU, as a GPU node does, so GPU trials are really scheduled by Ray (one at a time); no
    trial can use it here, and each says so."""
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default work folder of a search run here, its MLflow database made ahead (a copy
    of an empty one: services.empty_mlflow_db)."""
    from services import empty_mlflow_db

    monkeypatch.chdir(tmp_path)
    empty_mlflow_db(tmp_path / "tuner-runs" / "mlflow.db")
    return tmp_path / "tuner-runs"
