"""Tables and exports built from the Optuna storage alone, so `tuner best` needs nothing else."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tuner import metrics as mx
from tuner.driver import study as st
from tuner.driver.payoff import payoffs
from tuner.driver.ranking import Row, baseline_row, paired_verdict, pareto_front, ranked
from tuner.driver.search.standing import counted
from tuner.trial import MeasureSettings


def cheapest_line(all_rows: list[Row], currency: str = "USD") -> str | None:
    """One line: which device and config give the most samples per unit of currency, and by
    how much they beat the best config of every other device and the baseline."""
    best = ranked(all_rows, mx.SAMPLES_PER_DOLLAR)
    if not best:
        return None
    top, base = best[0], baseline_row(all_rows)
    per_dollar = top.metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0)
    price = top.metrics.get("price_per_hour")
    config = changes(top.knobs, base.knobs if base else None)
    config = "the baseline" if config == "(baseline)" else config
    line = (f"Most samples per {currency}: {top.device}, trial {top.number} "
            f"({config}): {per_dollar:,.0f} samples/"
            f"{currency}" + (f" at {price:g} {currency}/h" if price else ""))
    versus = []
    for device in sorted({row.device for row in best} - {top.device}):
        other = next(row for row in best if row.device == device)
        versus.append(f"{per_dollar / other.metrics['samples_per_dollar']:.2f}x the best {device} "
                      f"config (trial {other.number}, "
                      f"{other.metrics['samples_per_dollar']:,.0f})")
    if base is not None and base.number != top.number and base.metrics.get(mx.SAMPLES_PER_DOLLAR):
        versus.append(f"{per_dollar / base.metrics['samples_per_dollar']:.2f}x the baseline "
                      f"({base.metrics['samples_per_dollar']:,.0f})")
    return line + ("; " + " and ".join(versus) if versus else "")


def changes(knobs: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """A config as what it changes from the baseline: the part a reader needs."""
    if baseline is None:
        return " ".join(f"{k}={v}" for k, v in knobs.items())
    diff = [f"{k}={v}" for k, v in knobs.items() if baseline.get(k) != v]
    return " ".join(diff) if diff else "(baseline)"


def format_table(all_rows: list[Row], objective: str, top: int = 10,
                 max_cv: float = MeasureSettings.max_cv, currency: str = "USD",
                 objectives: tuple[str, ...] = ()) -> str:
    base = baseline_row(all_rows)
    best = ranked(all_rows, objective)[:top]
    front = ({row.number for row in pareto_front(all_rows, objectives)}
             if len(objectives) > 1 else set())
    inference = any("latency_p99_ms" in row.metrics for row in best)  # latency and quality
    on_gpu = any("gpu_peak_reserved_mb" in row.metrics for row in best)
    extra = f" {'p99 ms':>8} {'quality':>8}" if inference else ""
    extra += f" {'GPU MB':>7}" if on_gpu else ""
    header = (f"{'rank':>4}{' P' if front else ''} {'trial':>5} {'samples/s':>10} {'speed-up':>8} "
              f"{'samples/' + currency:>12} {'cv':>6}{extra}  config (changes from baseline)")
    lines = [header]
    for rank, row in enumerate(best, 1):
        m = row.metrics
        speedup = m.get(mx.SPEEDUP)
        cv = m.get(mx.STEP_TIME_CV, 0.0)
        noisy = "!" if cv > max_cv else " "
        columns = ""
        if inference:
            quality = m.get("guard_loss")  # an inference workload's guarded quality
            columns = (f"{m.get('latency_p99_ms', float('nan')):>8.2f} "
                       f"{(f'{quality:.4f}' if quality is not None else '-'):>8} ")
        if on_gpu:
            reserved = m.get("gpu_peak_reserved_mb")
            columns += f"{(f'{reserved:,.0f}' if reserved is not None else '-'):>7} "
        marker = (" *" if row.number in front else "  ") if front else ""
        lines.append(
            f"{rank:>4}{marker} {row.number:>5} {row.samples_per_sec:>10.2f} "
            f"{(f'{speedup:.2f}x' if speedup else '-'):>8} "
            f"{m.get('samples_per_dollar', 0.0):>12,.0f} {cv * 100:>5.1f}%{noisy} "
            f"{columns}{changes(row.knobs, base.knobs if base else None)}{_confirming(row)}"
        )
    lines.append(count_line(all_rows, max_cv))
    if any(row.metrics.get(mx.STEP_TIME_CV, 0.0) > max_cv for row in best):
        lines.append(f"! step-time cv above {max_cv:.0%}: spread steps, ranked because enough of "
                     "them pin the median (its 95% interval: median_error)")
    lines += findings(all_rows, objective)
    if front:
        lines.append(f"* Pareto front ({' vs '.join(objectives)}): trial(s) "
                     f"{', '.join(str(n) for n in sorted(front))}")
    cheapest = cheapest_line(all_rows, currency)
    if cheapest:
        lines.append(cheapest)
    by_reason = failures_by_reason(all_rows)
    if by_reason:
        lines.append("failures by reason:")
        lines += [f"  {count:>3} x {text}" for text, count in by_reason]
    return "\n".join(lines)


def findings(all_rows: list[Row], objective: str) -> list[str]:
    """What the search established beyond the table: the paired confirmation's verdict, when
    compiling pays, the best's headroom, the machine's drift."""
    best = ranked(all_rows, objective)
    verdict = paired_verdict(all_rows, objective)
    lines = [verdict.describe()] if verdict is not None else []
    lines += [found.describe() for found in payoffs(best[:10], all_rows)]  # the table's
    if best and mx.ROOF_SHARE in best[0].metrics:
        lines.append(headroom_line(best[0]))
    return lines + drift_lines(all_rows)


def headroom_line(row: Row) -> str:
    """How far the best config is from its device's limit."""
    share = row.metrics[mx.ROOF_SHARE]
    dtype = row.knobs.get("dtype", "fp32")
    return (f"headroom: trial {row.number} does {row.metrics[mx.ACHIEVED_TFLOPS]:.3g} TFLOP/s, "
            f"{share:.0%} of its device's {dtype} matmul roof (measured in this study)")


def drift_lines(all_rows: list[Row]) -> list[str]:
    """What the sentinels saw: the baseline config's figure over the search, as ratios of
    its first, and the trials measured again."""
    sentinels = [row for row in all_rows if row.role == st.SENTINEL and row.status == "ok"]
    if not sentinels:
        return []
    ratios = [row.drift or 0.0 for row in sentinels]
    again = [row.number for row in all_rows if row.role == st.REMEASURE]
    shown = ", ".join(f"{ratio:.2f}x (trial {row.number})"
                      for ratio, row in zip(ratios, sentinels, strict=True))
    lines = [f"machine drift: the baseline config re-measured {len(sentinels)} time(s) at "
             f"{shown} of its first measurement; range {min(ratios + [1.0]):.2f}x-"
             f"{max(ratios + [1.0]):.2f}x"]
    if again:
        lines.append(f"measured again after drift: trial(s) {', '.join(map(str, again))}")
    return lines


def count_line(all_rows: list[Row], max_cv: float) -> str:
    """`14 trials: 12 measured, 2 unsupported`: what became of every trial."""
    rejected = [row for row in all_rows if row.status == "ok" and row.violation > 0]
    failures = Counter(row.status for row in all_rows if row.status != "ok")
    measured = [r for r in all_rows if r.feasible and r.duplicate_of is None and not r.noisy]
    summary = [f"{len(all_rows)} trials: {len(measured)} measured"]
    unranked = [r for r in all_rows if r.feasible and r.duplicate_of is None and r.noisy]
    few = [r for r in unranked if _noisy_text(r).startswith("too few")]
    noisy = [r for r in unranked if r not in few]
    if noisy:
        summary.append(f"{len(noisy)} too noisy to rank (cv above {max_cv:.0%} after re-measuring)")
    if few:
        summary.append(f"{len(few)} with too few timed steps to rank (the time limit came first)")
    reused = [r for r in all_rows if r.duplicate_of is not None]
    if reused:
        summary.append(f"{len(reused)} reused (same config as an earlier trial)")
    if rejected:
        summary.append(f"{len(rejected)} rejected by the accuracy guard")
    summary += [f"{count} {status}" for status, count in sorted(failures.items())]
    return ", ".join(summary)


def _confirming(row: Row) -> str:
    return f"  [confirms trial {row.confirms}]" if row.confirms is not None else ""


def markdown_summary(all_rows: list[Row], objective: str, currency: str = "USD",
                     objectives: tuple[str, ...] = (), top: int = 10) -> str:
    """The top configs as a markdown table, for the MLflow UI's artifact view."""
    base = baseline_row(all_rows)
    front = ({row.number for row in pareto_front(all_rows, objectives)}
             if len(objectives) > 1 else set())
    lines = [f"# Top configs by {objective}", "",
             (f"| rank | trial | samples/s | speed-up | samples/{currency} | cv | Pareto | "
             "config (changes from baseline) |"),
             "|---:|---:|---:|---:|---:|---:|:-:|---|"]
    for rank, row in enumerate(ranked(all_rows, objective)[:top], 1):
        m = row.metrics
        lines.append(
            f"| {rank} | {row.number} | {row.samples_per_sec:.2f} | "
            f"{m.get('speedup', 0.0):.2f}x | {m.get('samples_per_dollar', 0.0):,.0f} | "
            f"{m.get('step_time_cv', 0.0):.1%} | {'*' if row.number in front else ''} | "
            f"{changes(row.knobs, base.knobs if base else None)}{_confirming(row)} |")
    found = findings(all_rows, objective)
    if found:
        lines += [""] + [f"- {line}" for line in found]
    cheapest = cheapest_line(all_rows, currency)
    if cheapest:
        lines += ["", cheapest]
    failures = failures_by_reason(all_rows)
    if failures:
        lines += ["", "## Failed, skipped and noisy trials", ""]
        lines += [f"- {count} x {text}" for text, count in failures]
    return "\n".join(lines) + "\n"


def failures_by_reason(all_rows: list[Row]) -> list[tuple[str, int]]:
    """Failed, skipped and noisy trials grouped by what went wrong (numbers in the reasons
    ignored, so 'limit 512 MB, 700 MB resident' and '..., 690 MB resident' count together)."""
    groups: dict[str, list[Row]] = {}
    for row in all_rows:
        if row.status != "ok":
            text = f"{row.status}: {row.reason or '(no reason recorded)'}"
        elif row.noisy and row.duplicate_of is None:
            text = _noisy_text(row)
        else:
            continue
        groups.setdefault(re.sub(r"\d+(\.\d+)?", "#", text[:160]), []).append(row)
    result = []
    for members in sorted(groups.values(), key=len, reverse=True):
        first = members[0]
        text = (f"{first.status}: {first.reason}" if first.status != "ok"
                else _noisy_text(first) + ", not ranked")
        numbers = ", ".join(str(r.number) for r in members[:8]) + (", ..." if len(members) > 8
                                                                   else "")
        result.append((f"{text[:160]} (trial{'s' if len(members) > 1 else ''} {numbers})",
                       len(members)))
    return result


def _noisy_text(row: Row) -> str:
    """Why a measured trial is not ranked: its noise, or too few timed steps (the time limit
    came first; its note says so)."""
    note = str(row.info.get("note", ""))
    if "fewer than measure.min_timed_steps" in note:
        return f"too few timed steps: {note.split(' (fewer than')[0]}"
    rounds = int(row.metrics.get("measure_rounds", 1))
    return (f"noisy: step-time cv {row.metrics.get('step_time_cv', 0.0):.0%} after "
            f"{counted(rounds, 'round')}")


def failure_lines(all_rows: list[Row]) -> list[str]:
    lines = []
    for row in all_rows:
        if row.status != "ok":
            lines.append(f"trial {row.number} {row.status}: {row.reason}")
        elif row.violation > 0:
            lines.append(f"trial {row.number} rejected by the accuracy guard: {row.reason}")
    return lines


def best_config(all_rows: list[Row], objective: str, study_name: str,
                objectives: tuple[str, ...] = ()) -> dict[str, Any] | None:
    best = ranked(all_rows, objective)
    if not best:
        return None
    row = best[0]
    config = {
        "study": study_name,
        "trial": row.number,
        "objective": objective,
        "exported": time.strftime("%Y-%m-%d %H:%M:%S"),
        "samples_per_sec": round(row.samples_per_sec, 4),
        "speedup_over_baseline": round(row.metrics.get(mx.SPEEDUP, 0.0), 4),
        "samples_per_dollar": round(row.metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0), 2),
        "knobs": row.knobs,
    }
    if len(objectives) > 1:  # the other trade-offs worth knowing
        config["pareto_front"] = [
            {"trial": r.number, "samples_per_sec": round(r.samples_per_sec, 4),
             "samples_per_dollar": round(r.metrics.get(mx.SAMPLES_PER_DOLLAR, 0.0), 2),
             "knobs": dict(r.knobs)} for r in pareto_front(all_rows, objectives)]
    return config


def best_config_yaml(config: dict[str, Any]) -> str:
    header = (f"# Best config of study {config['study']} (trial {config['trial']}), "
              f"{config['speedup_over_baseline']:.2f}x the baseline's {config['objective']}.\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def export_best(config: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config['study']}.yaml"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(best_config_yaml(config), encoding="utf-8")
    partial.replace(path)  # a full disk leaves the previous best config whole
    return path
