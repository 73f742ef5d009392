"""Tables and exports built from the Optuna storage alone, so `tuner best` needs nothing else."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna import Study
from optuna.trial import FrozenTrial, TrialState

from tuner import study as st


@dataclass(frozen=True)
class Row:
    number: int
    role: str
    status: str
    reason: str
    knobs: dict[str, Any]
    metrics: dict[str, float]
    violation: float
    duplicate_of: int | None = None

    @property
    def feasible(self) -> bool:
        return self.status == "ok" and self.violation <= 0

    @property
    def samples_per_sec(self) -> float:
        return self.metrics.get("samples_per_sec", 0.0)


def rows(study: Study) -> list[Row]:
    result = []
    for trial in st.finished_trials(study):
        attrs = trial.user_attrs
        result.append(Row(
            number=trial.number,
            role=attrs.get(st.ROLE, ""),
            status=attrs.get(st.STATUS, _state_status(trial)),
            reason=attrs.get(st.REASON, ""),
            knobs=attrs.get(st.KNOBS, dict(trial.params)),
            metrics=attrs.get(st.METRICS, {}),
            violation=float(attrs.get(st.CONSTRAINT, 0.0)),
            duplicate_of=attrs.get(st.DUPLICATE_OF),
        ))
    return result


def _state_status(trial: FrozenTrial) -> str:
    return "ok" if trial.state == TrialState.COMPLETE else trial.state.name.lower()


def ranked(all_rows: list[Row], objective: str) -> list[Row]:
    """Feasible measured trials, best first (the baseline included, as the reference)."""
    feasible = [row for row in all_rows if row.feasible and row.duplicate_of is None]
    return sorted(feasible, key=lambda row: row.metrics.get(objective, 0.0), reverse=True)


def baseline_row(all_rows: list[Row]) -> Row | None:
    return next((row for row in all_rows if row.role == st.BASELINE and row.status == "ok"), None)


def changes(knobs: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """A config as what it changes from the baseline: the part a reader needs."""
    if baseline is None:
        return " ".join(f"{k}={v}" for k, v in knobs.items())
    diff = [f"{k}={v}" for k, v in knobs.items() if baseline.get(k) != v]
    return " ".join(diff) if diff else "(baseline)"


def format_table(all_rows: list[Row], objective: str, top: int = 10,
                 max_cv: float = 0.10, currency: str = "USD") -> str:
    base = baseline_row(all_rows)
    best = ranked(all_rows, objective)[:top]
    header = (f"{'rank':>4} {'trial':>5} {'samples/s':>10} {'speed-up':>8} "
              f"{'samples/' + currency:>12} {'cv':>6}  config (changes from baseline)")
    lines = [header]
    for rank, row in enumerate(best, 1):
        m = row.metrics
        speedup = m.get("speedup")
        cv = m.get("step_time_cv", 0.0)
        noisy = "!" if cv > max_cv else " "
        lines.append(
            f"{rank:>4} {row.number:>5} {row.samples_per_sec:>10.2f} "
            f"{(f'{speedup:.2f}x' if speedup else '-'):>8} "
            f"{m.get('samples_per_dollar', 0.0):>12,.0f} {cv * 100:>5.1f}%{noisy} "
            f"{changes(row.knobs, base.knobs if base else None)}"
        )
    rejected = [row for row in all_rows if row.status == "ok" and row.violation > 0]
    failures = Counter(row.status for row in all_rows if row.status != "ok")
    measured = [r for r in all_rows if r.feasible and r.duplicate_of is None]
    summary = [f"{len(all_rows)} trials: {len(measured)} measured"]
    reused = [r for r in all_rows if r.duplicate_of is not None]
    if reused:
        summary.append(f"{len(reused)} reused (same config as an earlier trial)")
    if rejected:
        summary.append(f"{len(rejected)} rejected by the accuracy guard")
    summary += [f"{count} {status}" for status, count in sorted(failures.items())]
    lines.append(", ".join(summary))
    if any(row.metrics.get("step_time_cv", 0.0) > max_cv for row in best):
        lines.append(f"! step-time cv above {max_cv:.0%}: timings noisy, re-measure before trusting")
    return "\n".join(lines)


def failure_lines(all_rows: list[Row]) -> list[str]:
    lines = []
    for row in all_rows:
        if row.status != "ok":
            lines.append(f"trial {row.number} {row.status}: {row.reason}")
        elif row.violation > 0:
            lines.append(f"trial {row.number} rejected by the accuracy guard: {row.reason}")
    return lines


def best_config(all_rows: list[Row], objective: str, study_name: str) -> dict[str, Any] | None:
    best = ranked(all_rows, objective)
    if not best:
        return None
    row = best[0]
    return {
        "study": study_name,
        "trial": row.number,
        "objective": objective,
        "exported": time.strftime("%Y-%m-%d %H:%M:%S"),
        "samples_per_sec": round(row.samples_per_sec, 4),
        "speedup_over_baseline": round(row.metrics.get("speedup", 0.0), 4),
        "samples_per_dollar": round(row.metrics.get("samples_per_dollar", 0.0), 2),
        "knobs": row.knobs,
    }


def best_config_yaml(config: dict[str, Any]) -> str:
    header = (f"# Best config of study {config['study']} (trial {config['trial']}), "
              f"{config['speedup_over_baseline']:.2f}x the baseline's {config['objective']}.\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def export_best(config: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config['study']}.yaml"
    path.write_text(best_config_yaml(config), encoding="utf-8")
    return path
