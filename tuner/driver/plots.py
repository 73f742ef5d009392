"""Figures for the MLflow review, drawn from report rows (driver side: matplotlib, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner import metrics as mx
from tuner.driver.ranking import Row, baseline_row, pareto_front, ranked

DEVICE_COLOURS = {"cpu": "tab:blue", "cuda": "tab:green"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    _pyplot().close(figure)
    return path


def history_plot(all_rows: list[Row], objective: str, path: Path) -> Path | None:
    """The objective of every measured trial by trial number, the best so far as a step line,
    trials the guard rejected marked apart."""
    measured = [row for row in all_rows if row.status == "ok" and row.duplicate_of is None]
    if not measured:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    accepted = [row for row in measured if row.feasible and not row.noisy]
    others = [row for row in measured if row not in accepted]
    axes.scatter([r.number for r in accepted], [r.metrics.get(objective, 0.0) for r in accepted],
                 label="measured", color="tab:blue")
    if others:
        axes.scatter([r.number for r in others], [r.metrics.get(objective, 0.0) for r in others],
                     label="rejected by the guard, or noisy", marker="x", color="tab:red")
    best: float | None = None
    steps = []
    for row in sorted(accepted, key=lambda r: r.number):
        value = row.metrics.get(objective, 0.0)
        if best is None or not mx.at_least_as_good(best, value, objective):
            best = value
        steps.append((row.number, best))
    if steps:
        axes.step([n for n, _ in steps], [b for _, b in steps], where="post", color="black",
                  label="best so far")
    axes.set_xlabel("trial")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel(objective.replace("_", " ").replace("per sec", "/ s"))
    axes.set_title("Optimization history")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def importance_plot(study: Any, objective: str, path: Path) -> Path | None:
    """Optuna's parameter importances over the measured trials; drawn only when the sampler's
    own trials support a fitted model (tuner.driver.effects.importance_supported). Negated
    target: Optuna's default evaluator (PED-ANOVA) ranks knobs by how they reach low values,
    and ours are maximised."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    from tuner.driver import study as st

    measured = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get(st.STATUS) == "ok" and st.DUPLICATE_OF not in t.user_attrs]
    if len(measured) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # importance evaluators warn about their defaults
            importances = optuna.importance.get_param_importances(
                study, target=lambda t: -float(t.user_attrs.get(st.METRICS, {}).get(objective,
                                                                                     0.0)))
    except (RuntimeError, ValueError):
        return None  # e.g. no knob varied among the measured trials
    if not importances:
        return None
    plt = _pyplot()
    names = list(importances)[::-1]
    figure, axes = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5), dpi=110)
    axes.barh(names, [importances[name] for name in names], color="tab:blue")
    axes.set_xlabel(f"importance for {objective} (Optuna, sums to 1)")
    axes.set_title("Which knobs mattered")
    return _save(figure, path)


def effects_plot(all_rows: list[Row], objective: str, knob_names: list[str],
                 path: Path) -> Path | None:
    """Each knob's measured effect (tuner.driver.effects): the objective with that knob's other
    value, relative to the best config's choice; bars grey within the pair's noise. None when
    no two measured trials differ in one knob only."""
    from tuner.driver.effects import knob_effects, never_apart

    effects = knob_effects(all_rows, objective)
    if not effects:
        return None
    plt = _pyplot()
    effects = effects[::-1]  # the first knob on top
    figure, axes = plt.subplots(figsize=(11, 0.35 * len(effects) + 2), dpi=110)
    colours = ["tab:grey" if e.within_noise else "tab:green" if e.ratio > 1 else "tab:red"
               for e in effects]
    axes.barh([f"{e.label} (best: {e.best_value}): {e.ratio:.2f}x, trial {e.trial} vs "
               f"{e.against}" for e in effects],
              [e.ratio - 1.0 for e in effects], left=1.0, color=colours,
              xerr=[e.spread * e.ratio for e in effects], ecolor="black", capsize=2)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_xlabel(f"{objective}, relative to the best config (1.0)")
    untested = never_apart(all_rows, objective, knob_names)
    title = "What each knob did (measured one knob apart)"
    if untested:
        title += f"\nnever measured apart: {', '.join(untested)}"
    axes.set_title(title, fontsize=10)
    axes.grid(True, axis="x", alpha=0.3)
    return _save(figure, path)


def pareto_plot(all_rows: list[Row], objectives: tuple[str, ...], path: Path,
                currency: str = "USD") -> Path | None:
    """Samples/s against samples per unit of currency for every ranked trial, coloured by
    device, the Pareto front joined and labelled, the baseline ringed. None: nothing to draw."""
    measured = ranked(all_rows, objectives[0])
    if not measured:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 5), dpi=110)
    for device in sorted({row.device for row in measured}):
        rows = [row for row in measured if row.device == device]
        axes.scatter([r.samples_per_sec for r in rows],
                     [r.metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0) for r in rows],
                     label=device, alpha=0.7, color=DEVICE_COLOURS.get(device))
    front = sorted(pareto_front(all_rows, (mx.SAMPLES_PER_SEC, mx.SAMPLES_PER_DOLLAR)),
                   key=lambda r: r.samples_per_sec)
    axes.plot([r.samples_per_sec for r in front],
              [r.metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0) for r in front],
              color="black", linewidth=1, marker="o", markerfacecolor="none",
              label="Pareto front")
    for row in front:
        axes.annotate(f"trial {row.number}", (row.samples_per_sec,
                                              row.metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0)),
                      textcoords="offset points", xytext=(5, 5), fontsize=8)
    base = baseline_row(all_rows)
    if base is not None and base.metrics.get(mx.SAMPLES_PER_DOLLAR):
        axes.scatter([base.samples_per_sec], [base.metrics[mx.SAMPLES_PER_DOLLAR]], s=160,
                     facecolors="none", edgecolors="red", label="baseline")
    axes.set_xlabel("samples / s")
    axes.set_ylabel(f"samples / {currency}")
    axes.set_title("Speed and cost of every measured config")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def _ok(all_rows: list[Row]) -> list[Row]:
    return [row for row in all_rows if row.status == "ok" and row.duplicate_of is None]


def _numeric(values: list[Any]) -> tuple[list[float], list[str]]:
    """A knob's values as positions on an axis: numbers as they are (batch sizes), anything
    else by its order of first appearance; and the tick labels."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        ticks = sorted(set(values))
        return [float(ticks.index(v)) for v in values], [str(t) for t in ticks]
    labels = list(dict.fromkeys(str(v) for v in values))
    return [float(labels.index(str(v))) for v in values], labels


def varied_knobs(all_rows: list[Row]) -> list[str]:
    """Knobs that take more than one value among the measured trials."""
    rows = _ok(all_rows)
    names = list(dict.fromkeys(name for row in rows for name in row.knobs))
    return [name for name in names if len({repr(row.knobs.get(name)) for row in rows}) > 1]


def parallel_plot(all_rows: list[Row], objective: str, path: Path) -> Path | None:
    """Parallel coordinates: one line per measured trial across the knobs that varied, coloured
    by the objective (Optuna's plot of the same name, drawn from the rows)."""
    rows, knobs = _ok(all_rows), varied_knobs(all_rows)
    if len(rows) < 2 or not knobs:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(7, 1.3 * len(knobs) + 2), 4.5), dpi=110)
    values = [row.metrics.get(objective, 0.0) for row in rows]
    low, high = min(values), max(values)
    colour_map = plt.get_cmap("viridis")
    columns = [_numeric([row.knobs.get(name) for row in rows]) for name in knobs]
    for index, value in enumerate(values):
        ys = [positions[index] / max(1, len(labels) - 1) for positions, labels in columns]
        ys.append((value - low) / (high - low) if high > low else 0.5)
        axes.plot(range(len(knobs) + 1), ys, alpha=0.7,
                  color=colour_map((value - low) / (high - low) if high > low else 0.5))
    for column, (_, labels) in enumerate(columns):
        for tick, label in enumerate(labels):
            axes.annotate(label, (column, tick / max(1, len(labels) - 1)), fontsize=7,
                          xytext=(3, 0), textcoords="offset points")
    axes.annotate(f"{high:,.2f}", (len(knobs), 1.0), fontsize=7, xytext=(3, 0),
                  textcoords="offset points")
    axes.annotate(f"{low:,.2f}", (len(knobs), 0.0), fontsize=7, xytext=(3, 0),
                  textcoords="offset points")
    axes.set_xticks(range(len(knobs) + 1), [*knobs, objective], rotation=20, fontsize=8)
    axes.set_yticks([])
    axes.set_title("Parallel coordinates: every measured trial across the knobs it varied")
    return _save(figure, path)


def slice_plot(all_rows: list[Row], objective: str, path: Path) -> Path | None:
    """The objective against each varied knob's value, one panel per knob (Optuna's slice)."""
    rows, knobs = _ok(all_rows), varied_knobs(all_rows)
    if len(rows) < 2 or not knobs:
        return None
    plt = _pyplot()
    columns = min(4, len(knobs))
    lines = (len(knobs) + columns - 1) // columns
    figure, grid = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.8 * lines), dpi=110,
                                squeeze=False, sharey=True)
    values = [row.metrics.get(objective, 0.0) for row in rows]
    for index, name in enumerate(knobs):
        axes = grid[index // columns][index % columns]
        positions, labels = _numeric([row.knobs.get(name) for row in rows])
        axes.scatter(positions, values, c=[row.number for row in rows], cmap="Blues",
                     edgecolors="black", linewidths=0.4)
        axes.set_xticks(range(len(labels)), labels, fontsize=7, rotation=20)
        axes.set_title(name, fontsize=9)
        axes.grid(True, alpha=0.3)
    for index in range(len(knobs), lines * columns):
        grid[index // columns][index % columns].axis("off")
    grid[0][0].set_ylabel(objective, fontsize=8)
    figure.suptitle("Slice: the objective by each knob's value (darker: later trials)",
                    fontsize=10)
    return _save(figure, path)


STATUS_COLOURS = {"ok": "tab:blue", "failed": "tab:red", "crashed": "tab:red",
                  "timeout": "tab:orange", "oom": "tab:purple", "pruned": "tab:grey",
                  "unsupported": "tab:grey"}


def timeline_plot(all_rows: list[Row], path: Path) -> Path | None:
    """When each trial ran (its process's start to end), coloured by outcome: where a search's
    time went, and which trials ran side by side."""
    timed = [row for row in all_rows
             if row.info.get("started_at") and row.info.get("ended_at")]
    if not timed:
        return None
    plt = _pyplot()
    start = min(row.info["started_at"] for row in timed)
    figure, axes = plt.subplots(figsize=(8, 0.25 * len(timed) + 1.8), dpi=110)
    for row in timed:
        begin = (row.info["started_at"] - start) / 60
        length = max((row.info["ended_at"] - row.info["started_at"]) / 60, 0.01)
        axes.barh(row.number, length, left=begin,
                  color=STATUS_COLOURS.get(row.status, "tab:grey"))
    for status in sorted({row.status for row in timed}):
        axes.barh([], [], color=STATUS_COLOURS.get(status, "tab:grey"), label=status)
    axes.invert_yaxis()
    axes.set_xlabel("minutes since the first trial started")
    axes.set_ylabel("trial")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_title("Timeline of trials")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(True, axis="x", alpha=0.3)
    return _save(figure, path)
