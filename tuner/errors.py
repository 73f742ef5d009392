"""Errors a user can fix. They print as one line and exit with code 2, never as a traceback."""

from __future__ import annotations

USAGE_EXIT_CODE = 2


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
        super().__init__(where + message)


class SearchAborted(Exception):
    """The search cannot go on meaningfully (e.g. the baseline itself failed): exit code 1."""

    exit_code = 1


class RecordsIncomplete(Exception):
    """The search finished and the Optuna storage holds every trial, but MLflow could not be
    brought up to date (its server stayed unreachable): exit code 3, naming what is missing."""

    exit_code = 3
