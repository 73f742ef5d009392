"""How much memory a trial's processes really use, read from /proc: the supervisor checks it
once a second against the trial's cap without stealing a core from the timed process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

MEMORY_SHARE_OF_NODE = 0.8  # the default cap: this much of the node's memory, split by trials
PROGRESS_EVERY_S = 5.0  # how often a running trial's phase is published for the driver's line


def default_memory_limit_mb(share: int) -> int:
    """A share of this node's physical memory, so trials that run at once cannot starve it."""
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    return max(256, int(total_mb * MEMORY_SHARE_OF_NODE / max(1, share)))


@dataclass
class Watch:
    """What the supervisor checks once a second besides the clock: the memory the trial's
    processes really use (and its peak), and its phase for the driver (every few seconds)."""

    memory_limit_mb: int
    publish: Any = None
    peak_mb: float = 0.0
    published: float = 0.0

    def over_memory(self, pgid: int) -> float | None:
        """MB in use when past the cap, else None. Resident sizes first (a read of /proc/PID/
        stat: well under a millisecond); only when their sum passes the cap, the proportional
        set sizes that decide (smaps_rollup walks the page tables: 17 ms for a 2.5 GB trial
        here, too dear to pay every second beside a timed process)."""
        pids = _group_pids(pgid)
        used_mb = sum(_resident_kb(pid) for pid in pids) / 1024
        if used_mb > self.memory_limit_mb:
            used_mb = sum(_proportional_kb(pid) for pid in pids) / 1024
        self.peak_mb = max(self.peak_mb, used_mb)
        return used_mb if used_mb > self.memory_limit_mb else None

    def maybe_publish(self) -> None:
        if self.publish is not None and time.monotonic() - self.published >= PROGRESS_EVERY_S:
            self.published = time.monotonic()
            self.publish()


def group_memory_mb(pgid: int) -> float:
    """Memory a process group really uses: the sum of its processes' proportional set sizes
    (/proc/PID/smaps_rollup), where a page shared by N processes counts 1/N in each. Summed
    resident sizes count memory shared with forked DataLoader workers once per worker (a 400 MB
    trial with 2 idle workers read as 1.2 GB)."""
    return sum(_proportional_kb(pid) for pid in _group_pids(pgid)) / 1024


def _proportional_kb(pid: int) -> float:
    """A process's proportional set size; its resident size where smaps_rollup is unreadable
    (kernels before 4.14)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _resident_kb(pid)


def group_resident_mb(pgid: int) -> float:
    """Summed resident memory of a process group (what the cap used to count), for comparison."""
    return sum(_resident_kb(pid) for pid in _group_pids(pgid)) / 1024


def _group_pids(pgid: int) -> list[int]:
    pids: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return pids
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 21 and int(fields[2]) == pgid:
            pids.append(int(name))
    return pids


def _resident_kb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


