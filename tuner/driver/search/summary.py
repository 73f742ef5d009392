"""The end of a search: its outcome (table, best config file) and the MLflow parent run's
summary (metrics, tags, text files, figures), with whatever a hook adds (nightly's verdict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.effects import effects_markdown, importance_supported
from tuner.driver.search.console import Console
from tuner.driver.space import Space
from tuner.driver.stores import Locations


@dataclass
class Outcome:
    study: str
    rows: list[rk.Row]
    table: str
    best_path: Path | None
    launched: int = 0
    records_missing: str | None = None  # what MLflow lacks at the end, if it stayed down
    mlflow_ids: tuple[str, str] | None = None  # (experiment id, the search's run id)
    report_path: Path | None = None  # report.html, once the summary is written


def outcome_of(study: Any, space: Space, where: Locations, study_name: str,
               launched: int) -> Outcome:
    """The table and the best config file, from what the storage holds now."""
    all_rows = rk.rows(study)
    table = rp.format_table(all_rows, space.objective, max_cv=space.max_cv,
                            currency=space.cost.currency, objectives=space.objectives)
    best = rp.best_config(all_rows, space.objective, study_name, space.objectives)
    best_path = rp.export_best(best, where.best_folder) if best else None
    return Outcome(study_name, all_rows, table, best_path, launched)


@dataclass
class Summary:
    """What the parent run gets: metrics, tags, text files and figures."""

    metrics: dict[str, float]
    tags: dict[str, str]
    texts: dict[str, str]
    files: list[Path]
    params: dict[str, str] = field(default_factory=dict)  # the best config: best.<knob>
    steps: list[tuple[str, float, int]] = field(default_factory=list)  # (metric, value, trial)


def summary_of(outcome: Outcome, study: Any, space: Space, where: Locations,
               console: Console) -> Summary:
    base = rk.baseline_row(outcome.rows)
    best = rk.ranked(outcome.rows, space.objective)
    metrics: dict[str, float] = {"trials_finished": float(len(outcome.rows))}
    tags: dict[str, str] = {}
    if base is not None:
        metrics["baseline_samples_per_sec"] = base.samples_per_sec
    if best:
        metrics["best_samples_per_sec"] = best[0].samples_per_sec
        metrics["best_samples_per_dollar"] = best[0].metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0)
        metrics["best_speedup"] = best[0].metrics.get(mx.SPEEDUP, 0.0)
        tags["tuner.best_trial"] = str(best[0].number)
        tags["tuner.best_config"] = rp.changes(best[0].knobs, base.knobs if base else None)
    drifts = [row.drift for row in outcome.rows if row.role == st.SENTINEL and row.drift]
    if drifts:  # how far the machine moved: the sentinels' ratios to the baseline's first
        metrics.update(drift_min=min(drifts + [1.0]), drift_max=max(drifts + [1.0]))
    verdict = rk.paired_verdict(outcome.rows, space.objective)
    if verdict is not None:  # the ratio of the two best and its interval (issue 23)
        metrics.update(verdict.metrics())
        tags["tuner.paired_confirmation"] = verdict.describe()
    cheapest = rp.cheapest_line(outcome.rows, space.cost.currency)
    if cheapest:
        tags["tuner.most_samples_per_dollar"] = cheapest[:5000]
    tags["tuner.prices"] = space.cost.describe(space.devices())
    texts = {"summary.txt": outcome.table + "\n\n" + "\n".join(rp.failure_lines(outcome.rows)),
             "summary.md": rp.markdown_summary(outcome.rows, space.objective,
                                               space.cost.currency, space.objectives),
             "knob_effects.md": effects_markdown(outcome.rows, space.objective,
                                                 list(space.knobs)),
             "fingerprint.json": fingerprint(outcome)}
    files = [outcome.best_path] if outcome.best_path else []
    figures = plots(outcome, study, space, where, console)
    files += figures + report(outcome, space, where, figures, console)
    params = {f"best.{knob}": str(value) for knob, value in best[0].knobs.items()} if best else {}
    return Summary(metrics, tags, texts, files, params, best_so_far(outcome.rows, space.objective))


def best_so_far(all_rows: list[rk.Row], objective: str) -> list[tuple[str, float, int]]:
    """`best_so_far_<objective>` stepped by trial number: the search's progress as MLflow's
    chart of the parent run draws it."""
    name, best, steps = f"best_so_far_{objective}", None, []
    for row in sorted(all_rows, key=lambda r: r.number):
        if not (row.feasible and not row.noisy and objective in row.metrics):
            continue
        value = row.metrics[objective]
        if best is None or not mx.at_least_as_good(best, value, objective):
            best = value
        steps.append((name, best, row.number))
    return steps


def plots(outcome: Outcome, study: Any, space: Space, where: Locations,
          console: Console) -> list[Path]:
    """Figures for the MLflow review; a figure that cannot be drawn is left out, never a
    reason to lose the search's record."""
    from tuner.driver import plots as figures

    folder = where.workdir / "plots" / outcome.study
    made = []
    try:
        made.append(figures.history_plot(outcome.rows, space.objective,
                                         folder / "optimization_history.png"))
        made.append(figures.effects_plot(outcome.rows, space.objective, list(space.knobs),
                                         folder / "knob_effects.png"))
        if importance_supported(study.get_trials(deepcopy=False), list(space.knobs)):
            made.append(figures.importance_plot(study, space.objective,
                                                folder / "knob_importance.png"))
        made.append(figures.parallel_plot(outcome.rows, space.objective,
                                          folder / "parallel_coordinates.png"))
        made.append(figures.slice_plot(outcome.rows, space.objective, folder / "slice.png"))
        made.append(figures.timeline_plot(outcome.rows, folder / "timeline.png"))
        if len(space.objectives) > 1 or len(space.devices()) > 1:
            made.append(figures.pareto_plot(outcome.rows, space.objectives,
                                            folder / "pareto_front.png", space.cost.currency))
    except Exception as error:  # noqa: BLE001 - a plot is a convenience
        console.out(f"warning: a plot for MLflow could not be drawn: {type(error).__name__}: "
                    f"{error}")
    return [path for path in made if path is not None]


def report(outcome: Outcome, space: Space, where: Locations, figures: list[Path],
           console: Console) -> list[Path]:
    """report.html beside the best config; [] (and a warning) if it cannot be written."""
    from tuner.driver import html_report

    best = outcome.best_path.read_text(encoding="utf-8") if outcome.best_path else None
    try:
        outcome.report_path = html_report.write(
            where.best_folder / f"{outcome.study}.report.html",
            html_report.render(outcome.study, outcome.rows, space.objective,
                               space.cost.currency, space.max_cv, list(space.knobs), best,
                               figures))
    except OSError as error:
        console.out(f"warning: report.html could not be written: {error}")
        return []
    return [outcome.report_path]


def fingerprint(outcome: Outcome) -> str:
    """Hardware and libraries: the driver's, and the trial processes' as the baseline saw
    them (a nightly comparison across a library update needs both)."""
    from tuner.driver.tracking import host_fingerprint, library_versions

    base = rk.baseline_row(outcome.rows)
    worker = {key: base.info[key] for key in ("hostname", "versions", "gpu", "torch_threads")
              if base is not None and key in base.info}
    return json.dumps({"driver": {"host": host_fingerprint(), "versions": library_versions()},
                       "baseline_trial": worker}, indent=2, sort_keys=True)
