"""The local-search lock, the cores registry and the weights cache live in a folder of this
user's own (0700): a path another local user made first is refused, never used."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import SPACES

from tuner.node import cores
from tuner.private import NotPrivate, private_folder


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No XDG_RUNTIME_DIR; the temp folder is `tmp_path`."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_the_folder_is_made_private_under_the_runtime_dir(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    folder = private_folder("tuner")
    assert folder == runtime / "tuner" and folder.stat().st_mode & 0o777 == 0o700


def test_without_a_runtime_dir_it_is_a_private_temp_folder(temp: Path) -> None:
    folder = private_folder("tuner")
    assert folder == temp / f"tuner-{os.getuid()}" and folder.stat().st_mode & 0o777 == 0o700
    assert private_folder("tuner") == folder  # found again, and still accepted


@pytest.mark.parametrize("made_first", ["open to all", "a link", "a file", "another user's"])
def test_a_path_made_first_by_someone_else_is_refused(temp: Path, made_first: str) -> None:
    path = temp / f"tuner-{os.getuid()}"
    if made_first == "open to all":
        path.mkdir()
        path.chmod(0o777)
    elif made_first == "a link":
        (temp / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(temp / "elsewhere")
    elif made_first == "a file":
        path.write_text("", encoding="utf-8")
    else:
        if os.getuid() != 0:
            pytest.skip("making a folder another user owns needs root")
        path.mkdir(mode=0o700)
        os.chown(path, 65534, 65534)
    with pytest.raises(NotPrivate, match="is not a private folder of this user"):
        private_folder("tuner")


def test_the_cores_registry_lives_in_the_private_folder(temp: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cores.REGISTRY_ENV, raising=False)
    claimed = cores.claim(1)
    try:
        assert (temp / f"tuner-{os.getuid()}" / "cores.json").exists()
    finally:
        cores.release()
    assert claimed


def test_a_hostile_lock_folder_is_one_line_and_nothing_starts(tmp_path: Path) -> None:
    hostile = tmp_path / f"tuner-{os.getuid()}"
    hostile.mkdir()
    hostile.chmod(0o777)
    env = {key: value for key, value in os.environ.items()
           if key not in ("TUNER_HOST_LOCK", "XDG_RUNTIME_DIR")}
    done = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                           str(SPACES / "quick_train.yaml"), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, env={**env, "TMPDIR": str(tmp_path)},
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "the local-search lock: " in done.stderr
    assert "is not a private folder of this user" in done.stderr
    assert not (tmp_path / "w").exists()
