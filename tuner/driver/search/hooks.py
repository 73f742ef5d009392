"""How another use of the search loop (nightly) takes part in it without reaching into it."""

from __future__ import annotations

from typing import Any

from tuner.driver.search.summary import Outcome

Extras = tuple[dict[str, float], dict[str, str], dict[str, str]]  # metrics, tags, text files


class SearchHooks:
    """Told the study once it is open, asked for the configs to queue after the baseline and
    for what to add to the summary run. The defaults do nothing."""

    def study_opened(self, study: Any, storage: Any) -> None:
        """Before any trial runs: refuse, or read earlier studies of the same storage."""

    def first_configs(self) -> list[tuple[dict[str, Any], str]]:
        """(config, role) to measure right after the baseline."""
        return []

    def must_confirm(self) -> dict[str, Any] | None:
        """A config the budget's paired confirmation must measure beside the best (nightly:
        last night's champion, so a change of champion is judged by pairs), or None."""
        return None

    def summary_extras(self, outcome: Outcome) -> Extras:
        """Metrics, tags and text files for the search's MLflow parent run."""
        return {}, {}, {}
