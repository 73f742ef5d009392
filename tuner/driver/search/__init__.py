"""The search loop and its collaborators, each holding one job's state:

- `loop`: the order of events (ask, admit, submit, wait, finish), lifecycle, scheduling
- `admit`: run, reuse or skip a proposed config; the TrialConfig it gets
- `results`: what a result means: derived metrics, the guard's verdict, how Optuna is told
- `records`: MLflow writes through outages
- `summary`: the outcome and the MLflow parent run's summary
- `console`: the lines on the terminal
- `hooks`: how nightly (or another use) takes part
"""

from tuner.driver.search.hooks import SearchHooks
from tuner.driver.search.loop import Search
from tuner.driver.search.summary import Outcome

__all__ = ["Outcome", "Search", "SearchHooks"]
