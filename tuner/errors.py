"""Errors a user can fix. They print as one line and exit with code 2, never as a traceback."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any

USAGE_EXIT_CODE = 2
REGRESSION_EXIT_CODE = 4  # `tuner nightly`: tonight's champion regressed (1 stopped, 3 MLflow)

_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 4
_SHORT.maxlevel = 2
_SHORT.maxlong = 40


def show(value: Any) -> str:
    """A value for an error message: short, one line, and never expanding a huge structure
    (YAML aliases can make a small file hold a billion items)."""
    return _SHORT.repr(value)


def did_you_mean(word: Any, options: Iterable[str]) -> str:
    """`did you mean batch_size? ` for a near miss (a typo, a dash for an underscore), else ''."""
    if not isinstance(word, str):
        return ""
    by_folded = {option.lower().replace("-", "_"): option for option in options}
    close = difflib.get_close_matches(word.lower().replace("-", "_"), list(by_folded), n=1,
                                      cutoff=0.6)
    return f"did you mean {by_folded[close[0]]}? " if close else ""


def one_line(text: str) -> str:
    return " ".join(text.split())


class UserError(Exception):
    """Bad input from the user: a file, a field, a flag. Printed as one line, exit code 2."""

    exit_code = USAGE_EXIT_CODE


class SpaceError(UserError):
    """A search-space file that cannot be used, naming the file, the field and the fix."""

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        self.message = message
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(one_line(where + message))


class SearchAborted(Exception):
    """The search cannot go on meaningfully (e.g. the baseline itself failed): exit code 1."""

    exit_code = 1


class RecordsIncomplete(Exception):
    """The search finished and the Optuna storage holds every trial, but MLflow could not be
    brought up to date (its server stayed unreachable): exit code 3, naming what is missing."""

    exit_code = 3
