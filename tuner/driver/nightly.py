"""`tuner nightly`: tonight's search, warm-started from the best configs of earlier nights, with
last night's champion re-measured beside tonight's, and a regression verdict a scheduler can act
on (a distinct exit code).

Each night is its own Optuna study, `<study>.night.<YYYY-MM-DD>`, in the same storage and under
the space's one MLflow experiment (one parent run per night), so nights resume and compare
independently. Timings drift between runs (another machine, another load), so nights are
compared by ratios measured within each night: the champion's speed-up over that night's
baseline. A slowdown that hits the baseline as much as the champion is indistinguishable from
machine drift by this measure; the absolute figures are printed beside it for a person.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.search.hooks import Extras, SearchHooks
from tuner.driver.search.summary import Outcome
from tuner.errors import REGRESSION_EXIT_CODE, UserError

NIGHT = ".night."
CHAMPION = st.CHAMPION  # role of last night's champion, re-measured tonight
WARM_START = "warm_start"  # role of the other best earlier configs queued tonight


def night_study(study: str, date: str) -> str:
    return f"{study}{NIGHT}{date}"


def parse_date(text: str | None) -> str:
    """YYYY-MM-DD; today (local time) when not given."""
    if text is None:
        return datetime.date.today().isoformat()
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise UserError(f"--date: expected YYYY-MM-DD, got {text!r}") from None


def earlier_nights(storage: Any, study: str, date: str) -> list[str]:
    """This space's night studies before `date`, newest first."""
    import optuna

    prefix = f"{study}{NIGHT}"
    names = [name for name in optuna.get_all_study_names(storage=storage)
             if name.startswith(prefix) and name[len(prefix):] < date]
    return sorted(names, reverse=True)


@dataclass
class Verdict:
    """How tonight compares with the last night that had a champion."""

    status: str  # "first night", "ok", "regression", "no champion"
    lines: list[str] = field(default_factory=list)
    tonight: rk.Row | None = None
    last: rk.Row | None = None
    ratio: float | None = None  # tonight's champion speed-up / last night's

    @property
    def exit_code(self) -> int:
        return REGRESSION_EXIT_CODE if self.status == "regression" else 0


def knob_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two configs, knob by knob: 'batch_size 64 -> 16'."""
    names = list(before) + [name for name in after if name not in before]
    return [f"{name} {before.get(name, '(unset)')} -> {after.get(name, '(unset)')}"
            for name in names if before.get(name) != after.get(name)]


def compare(tonight_rows: list[rk.Row], last_rows: list[rk.Row] | None, last_night: str | None,
            objective: str, threshold: float) -> Verdict:
    """Tonight's champion against the last night's, by speed-up over each night's baseline."""
    tonight = next(iter(rk.ranked(tonight_rows, objective)), None)
    base = rk.baseline_row(tonight_rows)
    if tonight is None or base is None:
        return Verdict("no champion", [("no measured, accepted config tonight: nothing to compare "
                                       "(see the failures above)")])
    described = rp.changes(tonight.knobs, base.knobs)
    speedup = tonight.metrics.get(mx.SPEEDUP, 1.0)
    head = (f"tonight's champion: trial {tonight.number} ({described}), "
            f"{tonight.samples_per_sec:.2f} samples/s, {speedup:.2f}x tonight's baseline")
    last = next(iter(rk.ranked(last_rows or [], objective)), None)
    if last is None:
        return Verdict("first night", [head, ("first night with a champion: nothing to compare "
                                             "against yet")], tonight=tonight)
    last_speedup = last.metrics.get(mx.SPEEDUP, 1.0)
    ratio = speedup / last_speedup if last_speedup > 0 else 1.0
    lines = [head]
    again = (base if last.role == "baseline"
             else next((row for row in tonight_rows if row.role == CHAMPION), None))
    if again is not None:
        measured = (f"{again.samples_per_sec:.2f} samples/s, "
                    f"{again.metrics.get('speedup', 0.0):.2f}x" if again.status == "ok"
                    else f"{again.status}: {again.reason}")
        if again.status == "ok" and again.violation > 0:
            measured += " (now rejected by the accuracy guard)"
        lines.append(f"last night's champion (trial {last.number} of {last_night}) re-measured "
                     f"tonight as trial {again.number}: {measured}")
    last_base = rk.baseline_row(last_rows or [])
    drift = (f"; baseline {base.samples_per_sec / last_base.samples_per_sec - 1:+.0%}"
             if last_base is not None and last_base.samples_per_sec else "")
    lines.append(f"absolute, with machine drift: champion {tonight.samples_per_sec:.2f} vs "
                 f"{last.samples_per_sec:.2f} samples/s "
                 f"({tonight.samples_per_sec / last.samples_per_sec - 1:+.0%}){drift}")
    lines += _change_lines(knob_changes(last.knobs, tonight.knobs), last, tonight_rows, objective)
    if ratio < 1 - threshold:
        lines.insert(0, (f"REGRESSION: tonight's champion is {speedup:.2f}x its baseline, last "
                         f"night's ({last_night}) was {last_speedup:.2f}x: {ratio:.2f} of it, "
                         f"below the {1 - threshold:.2f} the space allows (nightly.threshold "
                         f"{threshold:g})"))
        return Verdict("regression", lines, tonight, last, ratio)
    lines.insert(0, (f"no regression: tonight's champion is {speedup:.2f}x its baseline, last "
                     f"night's ({last_night}) {last_speedup:.2f}x ({ratio:.2f} of it; "
                     f"threshold {threshold:g})"))
    return Verdict("ok", lines, tonight, last, ratio)


def _change_lines(changed: list[str], last: rk.Row, tonight_rows: list[rk.Row],
                  objective: str) -> list[str]:
    """Whether the best config changed, as the paired confirmation against last night's
    champion judged it (a tie is not a change: the champion keeps its place)."""
    verdict = rk.paired_verdict(tonight_rows, objective)
    against = verdict is not None and not knob_changes(last.knobs, verdict.other.knobs)
    lines = [verdict.describe()] if verdict is not None else []
    if not changed:
        return lines
    if verdict is not None and against and verdict.decided:
        how = (f"by pairs, {verdict.ratio:.2f}x last night's champion, 95% interval "
               f"{verdict.low:.2f}-{verdict.high:.2f}")
    else:
        how = "by single measurements: no paired confirmation against last night's champion"
    return lines + [f"best config changed ({how}): " + ", ".join(changed)]


class Nightly(SearchHooks):
    """Tonight's part in a search of a space: its own study (`study_name`), warm-started from
    earlier nights, ending with a verdict against the last night."""

    def __init__(self, space: Any, date: str) -> None:
        self.space = space
        self.date = date
        self.study_name = night_study(space.study, date)
        self.run_name = f"night-{date}"
        self.start_tags = {"tuner.night": date}
        self.verdict: Verdict | None = None
        self.last_night: str | None = None
        self.last_rows: list[rk.Row] | None = None

    def study_opened(self, study: Any, storage: Any) -> None:
        import optuna

        self._refuse_overlap(study)
        for name in earlier_nights(storage, self.space.study, self.date):
            rows = rk.rows(optuna.load_study(study_name=name, storage=storage))
            if rk.ranked(rows, self.space.objective):
                self.last_night, self.last_rows = name, rows
                break

    def _refuse_overlap(self, study: Any) -> None:
        """Two runs of one night at once (a scheduler's retry while the first still runs, on a
        shared Ray cluster) would both measure tonight: the second is refused."""
        import time

        from tuner.driver import recovery as rc

        for key, session in study.user_attrs.items():
            if not key.startswith(rc.SESSION_PREFIX) or not isinstance(session, dict):
                continue
            alive = time.time() - float(session.get("beat", 0)) <= self.space.trial.grace_s
            if not session.get("ended") and alive:
                raise UserError(
                    f"tonight's run of {self.space.study} ({study.study_name}) is already "
                    f"running (host {session.get('host')}, pid {session.get('pid')}); wait for "
                    "it, or pass another --date")

    def first_configs(self) -> list[tuple[dict[str, Any], str]]:
        """Last night's champion first, then the next best earlier configs that still fit the
        space (a knob or choice removed since makes a config unusable: it is left out)."""
        if self.last_rows is None or self.space.nightly.warm_start == 0:
            return []
        picked: list[tuple[dict[str, Any], str]] = []
        seen: list[dict[str, Any]] = []
        for rank, row in enumerate(rk.ranked(self.last_rows, self.space.objective)):
            config = self.space.searched(row.knobs)
            if not all(self.space.knobs[name].contains(value) for name, value in config.items()):
                continue
            if config in seen:
                continue
            seen.append(config)
            if row.role == "baseline":
                continue  # measured tonight anyway, as tonight's baseline
            picked.append((config, CHAMPION if rank == 0 else WARM_START))
            if len(picked) >= self.space.nightly.warm_start:
                break
        return picked

    def must_confirm(self) -> dict[str, Any] | None:
        """Last night's champion config: tonight's paired confirmation measures it beside
        tonight's best, so "best config changed" is judged by pairs, not single runs."""
        last = next(iter(rk.ranked(self.last_rows or [], self.space.objective)), None)
        if last is None:
            return None
        config = self.space.searched(last.knobs)  # the baseline's too: it is measured tonight
        fits = all(self.space.knobs[name].contains(value) for name, value in config.items())
        return config if fits else None

    def summary_extras(self, outcome: Outcome) -> Extras:
        verdict = self.judge(outcome)
        tags = {"tuner.night": self.date, "tuner.verdict": verdict.status,
                "tuner.previous_night": self.last_night or ""}
        metrics: dict[str, float] = {}
        if verdict.tonight is not None:
            tags["tuner.champion"] = rp.changes(verdict.tonight.knobs,
                                                (rk.baseline_row(outcome.rows) or
                                                 verdict.tonight).knobs)
            metrics["champion_speedup"] = verdict.tonight.metrics.get(mx.SPEEDUP, 1.0)
            tags["tuner.champion_speedup"] = f"{metrics['champion_speedup']:.2f}x"
            metrics["champion_samples_per_sec"] = verdict.tonight.samples_per_sec
        if verdict.ratio is not None:
            metrics["champion_speedup_vs_last_night"] = verdict.ratio
        return metrics, tags, {"nightly.txt": "\n".join(verdict.lines) + "\n"}

    def judge(self, outcome: Outcome) -> Verdict:
        if self.verdict is None:
            self.verdict = compare(outcome.rows, self.last_rows, self.last_night,
                                   self.space.objective, self.space.nightly.threshold)
        return self.verdict
