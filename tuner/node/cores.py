"""Disjoint core sets for trials that run side by side on one node.

Ray counts CPUs but does not say which: two trials of one CPU each may be scheduled by the OS
onto the same core and disturb each other's timings. Each trial's supervisor claims specific
cores from a registry file local to the node (under an flock, so any number of searches on the
node share it) and pins its trial process to them; claims of dead processes are dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from tuner.private import private_folder

REGISTRY_ENV = "TUNER_CORES_REGISTRY"


def registry_path() -> Path:
    """TUNER_CORES_REGISTRY, else a file in this user's private folder on the node."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    return private_folder("tuner") / "cores.json"


@contextlib.contextmanager
def _locked_claims() -> Iterator[dict[str, list[int]]]:
    path = registry_path()
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        try:
            claims = json.loads(handle.read() or "{}")
        except ValueError:
            claims = {}
        claims = {pid: cores for pid, cores in claims.items() if _alive(int(pid))}
        yield claims
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(claims))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(count: int, owner: int | None = None) -> list[int]:
    """Claim `count` cores no live claim holds, lowest first, for process `owner` (this one by
    default). Returns fewer when the node has fewer free (Ray's CPU counts normally prevent it)."""
    owner = owner or os.getpid()
    usable = sorted(os.sched_getaffinity(0))
    with _locked_claims() as claims:
        taken = {core for cores in claims.values() for core in cores}
        free = [core for core in usable if core not in taken]
        mine = free[:max(1, count)]
        claims[str(owner)] = mine
    return mine


def release(owner: int | None = None) -> None:
    with _locked_claims() as claims:
        claims.pop(str(owner or os.getpid()), None)
