"""Figures for the MLflow review, drawn from report rows (driver side: matplotlib, no torch)."""

from __future__ import annotations

from pathlib import Path

from tuner.report import Row, baseline_row, pareto_front, ranked

DEVICE_COLOURS = {"cpu": "tab:blue", "cuda": "tab:green"}


def pareto_plot(all_rows: list[Row], objectives: tuple[str, ...], path: Path,
                currency: str = "USD") -> Path | None:
    """Samples/s against samples per unit of currency for every ranked trial, coloured by
    device, the Pareto front joined and labelled, the baseline ringed. None: nothing to draw."""
    measured = ranked(all_rows, objectives[0])
    if not measured:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on a server or in CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5), dpi=110)
    for device in sorted({row.device for row in measured}):
        rows = [row for row in measured if row.device == device]
        axes.scatter([r.samples_per_sec for r in rows],
                     [r.metrics.get("samples_per_dollar", 0.0) for r in rows],
                     label=device, alpha=0.7, color=DEVICE_COLOURS.get(device))
    front = sorted(pareto_front(all_rows, ("samples_per_sec", "samples_per_dollar")),
                   key=lambda r: r.samples_per_sec)
    axes.plot([r.samples_per_sec for r in front],
              [r.metrics.get("samples_per_dollar", 0.0) for r in front],
              color="black", linewidth=1, marker="o", markerfacecolor="none",
              label="Pareto front")
    for row in front:
        axes.annotate(f"trial {row.number}", (row.samples_per_sec,
                                              row.metrics.get("samples_per_dollar", 0.0)),
                      textcoords="offset points", xytext=(5, 5), fontsize=8)
    base = baseline_row(all_rows)
    if base is not None and base.metrics.get("samples_per_dollar"):
        axes.scatter([base.samples_per_sec], [base.metrics["samples_per_dollar"]], s=160,
                     facecolors="none", edgecolors="red", label="baseline")
    axes.set_xlabel("samples / s")
    axes.set_ylabel(f"samples / {currency}")
    axes.set_title("Speed and cost of every measured config")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
