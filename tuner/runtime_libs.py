"""Shared libraries a trial may preload: memory allocators and OpenMP runtimes.

Found by file name in the places the dynamic loader and pip put them, without loading anything,
so the driver, `tuner doctor` and the trial process's own checks all see the same answer. Each
library says how to get it when it is missing.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Library:
    """One preloadable library: the file names that provide it, and how to install it."""

    name: str
    files: tuple[str, ...]
    install: str


LIBRARIES = {
    "jemalloc": Library("jemalloc", ("libjemalloc.so.2", "libjemalloc.so"),
                        "apt-get install libjemalloc2"),
    "tcmalloc": Library("tcmalloc", ("libtcmalloc.so.4", "libtcmalloc_minimal.so.4",
                                     "libtcmalloc.so", "libtcmalloc_minimal.so"),
                        "apt-get install libgoogle-perftools4 (or libtcmalloc-minimal4)"),
    "iomp": Library("iomp", ("libiomp5.so",), "pip install intel-openmp"),
}

# jemalloc's settings as PyTorch's run_cpu launcher sets them
JEMALLOC_CONF = ("oversize_threshold:1,background_thread:true,metadata_thp:auto,"
                 "dirty_decay_ms:9000000000,muzzy_decay_ms:9000000000")


def search_dirs() -> list[Path]:
    """Where to look: this Python's prefix (pip's intel-openmp), LD_LIBRARY_PATH, and the
    system library folders (Debian's multiarch folder first)."""
    dirs = [Path(sys.prefix, "lib"), Path(sys.base_prefix, "lib")]
    dirs += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    dirs += [Path(p) for p in sorted(glob.glob("/usr/lib/*-linux-gnu"))]
    dirs += [Path(p) for p in ("/usr/local/lib", "/usr/lib64", "/usr/lib", "/lib64", "/lib")]
    seen: list[Path] = []
    for folder in dirs:
        if folder not in seen and folder.is_dir():
            seen.append(folder)
    return seen


def find(name: str) -> Path | None:
    """The path of a library by its short name (jemalloc, tcmalloc, iomp), or None."""
    library = LIBRARIES[name]
    for file_name in library.files:
        for folder in search_dirs():
            path = folder / file_name
            if path.is_file():
                return path
    return None


def missing_reason(name: str) -> str:
    return f"{name}: library not found ({LIBRARIES[name].install})"


def preloaded_in_this_process() -> list[str]:
    """Shared objects mapped into this process whose names match a known library (read from
    /proc/self/maps): what a trial really got, not what it asked for."""
    names = {file_name for library in LIBRARIES.values() for file_name in library.files}
    names |= {"libgomp.so.1"}
    found: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                base = os.path.basename(path)
                if any(base.startswith(n.split(".so")[0] + ".so") for n in names) \
                        and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found
