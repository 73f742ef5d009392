"""Reading what searches stored, for `tuner best`, `tuner log` and `tuner studies`: the Optuna
storage alone, opened read-only where it can be (a mistyped path must create nothing), and every
answer also as plain data for `--format json`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import optuna

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.stores import check_storage_url, preflight_database, redact
from tuner.errors import UserError, did_you_mean
from tuner.trial import MeasureSettings


def storage_url(storage: str | None, workdir: Path) -> str:
    """The storage to read, checked: a missing default file or a database without studies is
    refused before Optuna would create its tables there."""
    url = storage or f"sqlite:///{(workdir / 'optuna.db').resolve()}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise UserError(f"--storage: no study storage at {url.removeprefix('sqlite:///')}; "
                        "run `tuner search` first or pass --storage/--workdir")
    check_storage_url(url)
    preflight_database(url, "--storage")
    _refuse_a_database_without_studies(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return url


def _refuse_a_database_without_studies(storage: str) -> None:
    """A SQLite file that holds no Optuna study storage (MLflow's database, say) is refused
    before Optuna would add its tables to it; opened read-only to look."""
    if not storage.startswith("sqlite:///"):
        return
    path = Path(storage.removeprefix("sqlite:///"))
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise UserError(f"--storage: {path} is not a readable SQLite database ({error})") \
            from None
    if "studies" not in tables:
        raise UserError(f"--storage: {path} holds no Optuna study storage (no 'studies' "
                        "table); give the optuna.db a search wrote (tuner-runs/optuna.db)")


def load_study(storage: str, name: str) -> optuna.Study:
    names = optuna.get_all_study_names(storage=storage)
    if name not in names:
        raise UserError(f"--study: no study {name!r} in {redact(storage)}; "
                        f"{did_you_mean(name, names)}studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def row_data(row: rk.Row) -> dict[str, Any]:
    """A trial as JSON-able data: what a script or a CI step reads."""
    return {"trial": row.number, "role": row.role or "candidate", "status": row.status,
            "verdict": row.verdict, "reason": row.reason, "noisy": row.noisy,
            "duplicate_of": row.duplicate_of, "confirms": row.confirms, "knobs": row.knobs,
            "metrics": row.metrics}


class StoredStudy:
    """One study as `tuner best` and `tuner log` show it."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.name = study.study_name
        attrs = study.user_attrs
        self.objective = attrs.get(st.OBJECTIVE, mx.SAMPLES_PER_SEC)
        self.objectives = tuple(attrs.get(st.OBJECTIVES, [self.objective]))
        self.max_cv = attrs.get(st.MAX_CV, MeasureSettings.max_cv)
        self.currency = attrs.get(st.CURRENCY, "USD")
        self.rows = rk.rows(study)

    def table(self, top: int) -> str:
        return rp.format_table(self.rows, self.objective, top=top, max_cv=self.max_cv,
                               currency=self.currency, objectives=self.objectives)

    def best(self) -> dict[str, Any] | None:
        return rp.best_config(self.rows, self.objective, self.name, self.objectives)

    def data(self, top: int) -> dict[str, Any]:
        return {"study": self.name, "objective": self.objective,
                "objectives": list(self.objectives), "currency": self.currency,
                "counts": rp.count_line(self.rows, self.max_cv),
                "ranked": [row_data(row) for row in rk.ranked(self.rows, self.objective)[:top]],
                "best": self.best()}

    def log(self, number: int) -> tuple[rk.Row, str]:
        """The trial and what it left to read, in words."""
        found = [row for row in self.rows if row.number == number]
        if not found:
            numbers = [row.number for row in self.rows]
            span = f"trials 0 to {max(numbers)}" if numbers else "no finished trial"
            raise UserError(f"--trial: study {self.name} holds no finished trial {number} "
                            f"({span})")
        row = found[0]
        head = f"trial {row.number} {row.status}" + (f": {row.reason}" if row.reason else "")
        if row.status == "ok":
            return row, f"{head}\ntrial {row.number} ended ok: nothing to read"
        return row, head + "\n\n" + (row.log or "(no traceback or output was kept for it)")


def studies(storage: str) -> list[dict[str, Any]]:
    """Every study in the storage: trials, finished ones, best figure, when it last ran."""
    found = []
    for summary in optuna.get_all_study_summaries(storage=storage, include_best_trial=False):
        study = StoredStudy(optuna.load_study(study_name=summary.study_name, storage=storage))
        best = rk.ranked(study.rows, study.objective)
        started = [t.datetime_start for t in study.study.get_trials(deepcopy=False)
                   if t.datetime_start is not None]
        found.append({
            "study": summary.study_name, "trials": summary.n_trials, "finished": len(study.rows),
            "objective": study.objective,
            "best": best[0].metrics.get(study.objective) if best else None,
            "best_trial": best[0].number if best else None,
            "best_speedup": best[0].metrics.get(mx.SPEEDUP) if best else None,
            "last_started": max(started).isoformat(timespec="seconds") if started else None})
    return found


def studies_table(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no studies in this storage"
    lines = [f"{'study':<28} {'trials':>6} {'best':>12}  {'speed-up':>8}  {'last started':<19}  "
             "objective"]
    for item in found:
        best = f"{item['best']:,.2f}" if item["best"] is not None else "-"
        speedup = f"{item['best_speedup']:.2f}x" if item["best_speedup"] else "-"
        lines.append(f"{item['study']:<28} {item['trials']:>6} {best:>12}  {speedup:>8}  "
                     f"{item['last_started'] or '-':<19}  {item['objective']}")
    return "\n".join(lines)
