"""Locks: one measuring search per machine when the tuner starts its own local Ray, and one
search at a time creating a SQLite store.

Two searches that each start a local Ray would each think they own every core, run trials side
by side and corrupt each other's timings. The second one is refused with a clear message; searches
that share one Ray cluster (`--ray-address`) are scheduled by Ray and need no lock. The lock is
an flock, so a killed search releases it with its process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tuner.errors import UserError, show
from tuner.private import NotPrivate, private_folder

LOCK_ENV = "TUNER_HOST_LOCK"  # tests and side-by-side installs may point it elsewhere


def lock_path() -> Path:
    """TUNER_HOST_LOCK, else a file in this user's private folder (no other local user can
    make or hold it)."""
    if os.environ.get(LOCK_ENV):
        return Path(os.environ[LOCK_ENV])
    try:
        return private_folder("tuner") / "local-ray.lock"
    except NotPrivate as error:
        raise UserError(f"the local-search lock: {error}; or point {LOCK_ENV} at a file of "
                        "your own") from None


def acquire(study: str) -> IO[str]:
    """Hold the machine's local-search lock until the returned file is closed (or we exit)."""
    path = lock_path()
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the search's life
    except OSError as error:
        raise UserError(f"{LOCK_ENV}: cannot open the local-search lock {show(str(path))}: "
                        f"{error.strerror or error}; point {LOCK_ENV} at a writable file or "
                        "unset it") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _holder(handle.read())
        handle.close()
        raise UserError(
            f"another tuner search ({holder}) is measuring on this machine with its own local "
            "Ray; two would share cores and corrupt each other's timings. Wait for it to finish, "
            "or run both against one Ray cluster (`ray start --head`, then --ray-address "
            f"127.0.0.1:6379), which schedules their trials apart (lock: {path})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "study": study,
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    handle.flush()
    return handle


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']}, study {info['study']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "unknown holder"


@contextlib.contextmanager
def creating_sqlite(url: str) -> Iterator[None]:
    """Hold a lock beside a SQLite database while it is opened (and maybe created): two searches
    starting at once would otherwise race to create its tables and migrate its schema."""
    if not url.startswith("sqlite:///"):
        yield
        return
    path = Path(url.removeprefix("sqlite:///") + ".lock")
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
