"""The driver's `TUNER_*` duration variables: each read in one place, each checked before a
search starts (a bad value is one line, exit 2, not a traceback minutes in)."""

from __future__ import annotations

import math
import os

from tuner.errors import UserError

# name -> (default seconds, what it sets)
DURATIONS: dict[str, tuple[float, str]] = {
    "TUNER_MLFLOW_RETRY_S": (30.0, "how often MLflow writes that failed are tried again"),
    "TUNER_MLFLOW_WAIT_S": (30.0, "how long the end of a search waits for MLflow to answer"),
    "TUNER_STORAGE_RETRY_S": (300.0, "how long a failing study storage (locked, full, "
                                     "restarting) is retried before the search stops"),
}


def seconds(name: str) -> float:
    """A duration from the environment, or its default; a value that is not one is a UserError
    naming the variable and the fix."""
    default = DURATIONS[name][0]
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 86400:
        raise UserError(f"{name}: expected seconds from 0 to 86400, got {text[:40]!r}; unset it "
                        f"for the default of {default:g}")
    return value


def check() -> None:
    """Before anything starts: every duration variable is usable."""
    for name in DURATIONS:
        seconds(name)
