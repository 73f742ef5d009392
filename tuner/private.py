"""Folders of this user's own on this machine, for what another local user must not touch: the
local-search lock, the cores registry, cached trained weights.

A fixed name under /tmp can be made first by anyone: a folder found there that is not this
user's, or that others may write to, is refused rather than used.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class NotPrivate(RuntimeError):
    """The folder's path is taken by something this user does not own alone."""


def private_folder(name: str) -> Path:
    """`$XDG_RUNTIME_DIR/NAME` (a per-user tmpfs, when the session has one), else
    `TMPDIR/NAME-UID`; made 0700 if missing. Raises NotPrivate when the path is a link, not a
    folder, someone else's, or open to others."""
    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = Path(runtime) if runtime and _owned_private(Path(runtime), uid) else None
    folder = base / name if base is not None else Path(tempfile.gettempdir(), f"{name}-{uid}")
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    if not _owned_private(folder, uid):
        raise NotPrivate(f"{folder} is not a private folder of this user (uid {uid}): another "
                         "user may have made it; remove it, or set TMPDIR to a folder of your own")
    return folder


def _owned_private(path: Path, uid: int) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == uid
            and not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO))
