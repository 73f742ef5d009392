"""The study's trials as rows, and which is best: the ranking rules the search, the tables,
the plots and nightly all read (a noisy, rejected or reused trial is never best; confirming
measurements outrank single ones; each objective is compared in its own direction).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from optuna import Study
from optuna.trial import FrozenTrial, TrialState

from tuner import metrics as mx
from tuner.driver import study as st
from tuner.driver.pairs import Paired, paired
from tuner.driver.strategy import config_key


@dataclass(frozen=True)
class Row:
    """One finished trial as the storage holds it: everything a table or MLflow needs."""

    number: int
    role: str
    status: str
    reason: str
    knobs: dict[str, Any]
    metrics: dict[str, float]
    violation: float
    duplicate_of: int | None = None
    retry_of: int | None = None
    run_id: str | None = None
    step_times_s: tuple[float, ...] = ()
    guard_losses: tuple[float, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    confirms: int | None = None  # a confirming trial: the trial whose config it re-measured
    log: str = ""  # a trial that did not end ok: its traceback and its output's tail
    pair: str | None = None  # a confirming trial: its round of the paired confirmation
    drift: float | None = None  # a sentinel's ratio, or that of the drifted window it was in

    @property
    def feasible(self) -> bool:
        return self.status == "ok" and self.violation <= 0

    @property
    def noisy(self) -> bool:
        """Still too noisy after its re-measurements: never reported as best."""
        return bool(self.metrics.get(mx.NOISY, 0.0))

    @property
    def samples_per_sec(self) -> float:
        return self.metrics.get(mx.SAMPLES_PER_SEC, 0.0)

    @property
    def device(self) -> str:
        return str(self.knobs.get("device", "cpu"))

    @property
    def verdict(self) -> str:
        if self.status != "ok":
            return ""
        return "rejected" if self.violation > 0 else "accepted"


def row_of(trial: FrozenTrial) -> Row:
    attrs = trial.user_attrs
    status = st.recorded_status(trial)
    return Row(
        number=trial.number,
        role=attrs.get(st.ROLE, ""),
        status=status or _state_status(trial),
        reason=(attrs.get(st.REASON, "") if status else "") or _state_reason(trial),
        knobs=attrs.get(st.KNOBS, dict(trial.params)),
        metrics=attrs.get(st.METRICS, {}),
        violation=float(attrs.get(st.CONSTRAINT, 0.0)),
        duplicate_of=attrs.get(st.DUPLICATE_OF),
        retry_of=trial.system_attrs.get("failed_trial"),
        run_id=attrs.get(st.MLFLOW_RUN_ID),
        step_times_s=tuple(attrs.get(st.STEP_TIMES, ())),
        guard_losses=tuple(attrs.get(st.GUARD_LOSSES, ())),
        info=attrs.get(st.INFO, {}),
        confirms=attrs.get(st.CONFIRMS),
        log=attrs.get(st.LOG, ""),
        pair=attrs.get(st.PAIR),
    )


def rows(study: Study) -> list[Row]:
    drift = study.user_attrs.get(st.DRIFT, {})  # finished trials take no attributes: the study's
    found = [row_of(trial) for trial in st.finished_trials(study)]
    return [replace(row, drift=drift[str(row.number)]) if str(row.number) in drift else row
            for row in found]


def _state_status(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        return "interrupted"  # failed by the stale-trial check: its search was killed
    return "ok" if trial.state == TrialState.COMPLETE else trial.state.name.lower()


def _state_reason(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        return "its search process stopped while it ran (no heartbeat); re-queued"
    return ""


def ranked(all_rows: list[Row], objective: str) -> list[Row]:
    """Feasible measured trials, best first (the baseline included, as the reference). Once
    a study has confirming trials, a confirmed config comes first, whatever a single
    unconfirmed measurement says (the best is reported from confirmed measurements only): the
    one the paired confirmation names (`pairs`), else the best by its median confirming
    measurement. A confirmed config is one row, its median confirming measurement; the first
    measurements of the configs they confirm are left out."""
    def best_first(row: Row) -> float:
        return row.metrics.get(objective, 0.0) * mx.sort_key(objective)

    measured = _measured(all_rows)
    by_config: dict[str, list[Row]] = {}
    for row in measured:
        if row.role == st.CONFIRM:
            by_config.setdefault(config_key(row.knobs), []).append(row)
    confirmed = sorted((sorted(rows, key=lambda r: r.metrics.get(objective, 0.0))[
        (len(rows) - 1) // 2] for rows in by_config.values()), key=best_first)
    verdict = paired_verdict(all_rows, objective)
    if verdict is not None:
        named = config_key(verdict.named.knobs)
        confirmed.sort(key=lambda row: config_key(row.knobs) != named)  # stable: named first
    rest = sorted(confirmed[1:] + unconfirmed(all_rows, objective), key=best_first)
    return confirmed[:1] + rest


def paired_verdict(all_rows: list[Row], objective: str) -> Paired | None:
    """The newest paired confirmation's verdict, for the table and MLflow."""
    base = baseline_row(all_rows)
    return paired(_measured(all_rows), objective, base.knobs if base else None)


def unconfirmed(all_rows: list[Row], objective: str) -> list[Row]:
    """Ranked trials of configs no confirming trial has measured again, best first."""
    measured = _measured(all_rows)
    confirmed = {config_key(row.knobs) for row in measured if row.role == st.CONFIRM}
    rest = [row for row in measured if config_key(row.knobs) not in confirmed]
    return sorted(rest, key=lambda row: row.metrics.get(objective, 0.0) * mx.sort_key(objective))


def _measured(all_rows: list[Row]) -> list[Row]:
    """Trials that rank: feasible, measured (not reused), steady, not a sentinel, and not
    measured in a drifted window when their config has a measurement that was not."""
    rows = [row for row in all_rows if row.feasible and row.duplicate_of is None
            and not row.noisy and row.role != st.SENTINEL]
    steady = {config_key(row.knobs) for row in rows if row.drift is None}
    return [row for row in rows if row.drift is None or config_key(row.knobs) not in steady]



def pareto_front(all_rows: list[Row], objectives: tuple[str, ...]) -> list[Row]:
    """Ranked trials no other ranked trial beats on every objective (each in its own
    direction), best first on the first objective. One objective: the best trial alone."""
    candidates = ranked(all_rows, objectives[0])
    if len(objectives) < 2:
        return candidates[:1]

    def beats(a: Row, b: Row) -> bool:
        pairs = [(a.metrics.get(name, 0.0), b.metrics.get(name, 0.0), name)
                 for name in objectives]
        return (all(mx.at_least_as_good(x, y, name) for x, y, name in pairs)
                and any(x != y for x, y, _ in pairs))

    return [row for row in candidates if not any(beats(other, row) for other in candidates)]


def baseline_row(all_rows: list[Row]) -> Row | None:
    return next((row for row in all_rows if row.role == st.BASELINE and row.status == "ok"), None)
