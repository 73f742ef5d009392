"""Searches replayed over a measured grid, for benchmarks/search_efficiency.py.

Each replayed search is asked exactly as `tuner search` asks (study.make_sampler, the baseline,
the priors, the sweep, TPE) and each trial is told a fresh measurement: the config's reference
value times a draw of its own run-to-run noise where it was measured three times or more, else
its one measurement times a draw of the grid's mean noise; with `drift`, times the machine's
mood as well (a shared VM's speed that drops for a few trials and comes back). So noise and
drift mislead the replay as they mislead a real search.
What the search does on top is simulated as it runs:

- screening: a trial whose first second of timed steps runs below 0.7 x the best is pruned;
- the drift sentinel (tuner/driver/search/sentinel.py): the baseline config measured again
  after every N measured trials; off its first figure by more than the tolerance, the trials
  of that window are flagged, measured again, and leave the ranking;
- the confirmation at the budget's end: the 2 best configs measured again in R interleaved
  rounds (A B, B A, ...) and judged by tuner.driver.pairs.paired itself (ratio, 95% interval,
  a tie names the simpler config); R = 1 without pairs: the best confirming measurement wins
  (issue 9's confirmation).

A search is judged by the reference value (the mean of every real measurement) of the config
it would report best.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Any

SCREEN_S = 1.0  # a pruned trial stops after this much timed time ...
PRUNE_BELOW = 0.7  # ... when it runs below this share of the best so far
DRIFT_TOLERANCE = 0.15  # measure.drift_tolerance's default
MAX_UNMEASURED_IN_A_ROW = 10


@dataclass(frozen=True)
class Method:
    """A way to search: the sampler, how it starts, and what it does on top."""

    sampler: str  # random | tpe
    start: str = "sweep"  # sweep | sampler
    priors: bool = True
    prune: bool = True
    confirm: int = 0  # configs re-measured at the budget's end
    rounds: int = 1  # interleaved rounds of that confirmation
    paired: bool = True  # judged by tuner.driver.pairs (False: the best confirming value)
    reuse: bool = True  # a re-proposed config is told its result and not counted
    sentinel: int = 0  # the drift sentinel every N measured trials (0: off)


METHODS = {
    "random": Method("random", "sampler", priors=False, prune=False, reuse=False),
    "tpe from the start (issue 9's before)": Method("tpe", "sampler", priors=False, prune=False,
                                                    reuse=False),
    "sweep + screening": Method("tpe"),
    "+ confirm 2, once each (issue 9)": Method("tpe", confirm=2, paired=False),
    "+ paired 2 x 2 rounds + sentinel": Method("tpe", confirm=2, rounds=2, sentinel=8),
    "+ paired 2 x 3 rounds, no sentinel": Method("tpe", confirm=2, rounds=3),
    "default: paired 2 x 3 + sentinel 8": Method("tpe", confirm=2, rounds=3, sentinel=8),
}


@dataclass
class Config:
    """One config of the grid: every measurement of it, and what a trial of it costs."""

    knobs: dict[str, Any]
    values: list[float]  # samples/s: the grid's measurement, then any re-measurements
    wall_s: float
    screen_wall_s: float  # a trial stopped at screening
    screen_ratio: float  # what the screening window saw / the full measurement
    ok: bool
    noisy: bool

    @property
    def truth(self) -> float:
        """The reference: the mean of every measurement of it."""
        return statistics.fmean(self.values) if self.ok else 0.0

    def measure(self, rng: random.Random, run_to_run_cv: float) -> float:
        """What measuring it again says: its reference value times a draw of its own
        run-to-run noise (the cv of its measurements, where it has three or more), else its
        one measurement times a draw of the grid's mean run-to-run noise. A draw, not one of
        its few real values picked again: two rounds of a pair that picked the same values
        would agree exactly and look decided."""
        if not self.ok:
            return 0.0
        if len(self.values) > 2:
            cv = statistics.stdev(self.values) / statistics.fmean(self.values)
            return self.truth * rng.lognormvariate(0.0, cv)
        return self.values[0] * rng.lognormvariate(0.0, run_to_run_cv)


def configs_of(entries: list[dict[str, Any]], again: dict[str, list[float]],
               max_timed_s: float) -> dict[str, Config]:
    """The grid's measurements as Configs (the screening window from the recorded steps)."""
    configs = {}
    for entry in entries:
        key = json.dumps(entry["knobs"], sort_keys=True)
        ok = entry["status"] == "ok"
        steps = entry["step_times_s"]
        window, total = [], 0.0
        for step in steps:
            if total >= SCREEN_S:
                break
            window.append(step)
            total += step
        value = entry["metrics"].get("samples_per_sec", 0.0)
        screened = (entry["knobs"]["batch_size"] / statistics.median(window)
                    if ok and len(window) >= 5 else value)
        timed = sum(steps) * entry["metrics"].get("measure_rounds", 1.0)
        configs[key] = Config(
            knobs=entry["knobs"], values=again.get(key, [value]) if ok else [0.0],
            wall_s=entry["wall_s"],
            screen_wall_s=max(0.0, entry["wall_s"] - timed) + min(SCREEN_S, max_timed_s),
            screen_ratio=screened / value if ok and value else 1.0, ok=ok,
            noisy=bool(entry["metrics"].get("noisy")))
    return configs


@dataclass
class Measured:
    key: str
    value: float
    role: str  # candidate | remeasure | sentinel | confirm
    drifted: bool = False
    pair: str | None = None


@dataclass
class Outcome:
    """One replayed search: the curve (wall s, reference value of the config it would report)
    after each budgeted trial, and its paired verdict."""

    curve: list[tuple[float, float]]
    reported: str = ""
    runner_up: str = ""
    verdict: Any = None  # tuner.driver.pairs.Paired, or None
    sentinels: int = 0
    drifted_windows: int = 0
    extra: list[str] = field(default_factory=list)


class Replay:
    """One search over the grid, with one seed."""

    def __init__(self, space: Any, configs: dict[str, Config], method: Method, seed: int,
                 budget: int, run_to_run_cv: float, drift: float = 1.0,
                 host: dict[str, Any] | None = None) -> None:
        self.space = dataclasses.replace(space, sampler=dataclasses.replace(
            space.sampler, name=method.sampler, seed=seed, start=method.start,
            priors=method.priors))
        self.configs, self.method, self.budget = configs, method, budget
        self.rng, self.cv, self.drift, self.host = random.Random(seed), run_to_run_cv, drift, host
        self.slow = False  # the machine's mood, with drift
        self.told: dict[str, float] = {}  # what a re-proposal of a config is told
        self.rows: list[Measured] = []
        self.wall = 0.0
        self.baseline_key = json.dumps(space.full_config({}), sort_keys=True)
        self.outcome = Outcome(curve=[])

    # -- the machine ---------------------------------------------------------------------
    def measure(self, key: str) -> float:
        """A fresh trial of `key`: its noise, and with drift the machine's mood (slow for a
        few trials at a time: enters with p 0.1 a trial, leaves with p 0.3)."""
        if self.drift != 1.0:
            self.slow = self.rng.random() < (0.7 if self.slow else 0.1)
        value = self.configs[key].measure(self.rng, self.cv)
        return value * (self.drift if self.slow else 1.0)

    # -- the ranking, as tuner.driver.ranking ranks ----------------------------------------
    def ranked(self) -> list[Measured]:
        rows = [r for r in self.rows if r.role != "sentinel" and not self.configs[r.key].noisy
                and self.configs[r.key].ok]
        steady = {r.key for r in rows if not r.drifted}
        rows = [r for r in rows if not r.drifted or r.key not in steady]
        return sorted(rows, key=lambda r: -r.value)

    def picked(self) -> float:
        ranked = self.ranked()
        return self.configs[ranked[0].key].truth if ranked else 0.0

    # -- the search ---------------------------------------------------------------------
    def run(self) -> Outcome:
        import optuna

        from tuner.driver import priors
        from tuner.driver import study as st

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        rounds = self.rounds()
        searched_trials = self.budget - self.method.confirm * rounds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(direction="maximize",
                                             sampler=st.make_sampler(self.space))
            st.enqueue_baseline(self.study, self.space)
            number = in_a_row = 0
            while number < searched_trials and in_a_row < MAX_UNMEASURED_IN_A_ROW:
                if number == 1 and self.method.priors:  # as the search does after the baseline
                    st.enqueue_first(self.study, self.space,
                                     priors.prior_configs(self.space, self.host or {}), "priors")
                self.sentinel_if_due()
                st.enqueue_sweep(self.study, self.space)
                counted = self.trial()
                in_a_row = 0 if counted else in_a_row + 1
                number += counted
                if counted:
                    self.outcome.curve.append((self.wall, self.picked()))
            self.confirm(rounds)
        while len(self.outcome.curve) < self.budget:  # the space ran out: nothing more
            self.outcome.curve.append(self.outcome.curve[-1] if self.outcome.curve
                                      else (self.wall, 0.0))
        return self.outcome

    def rounds(self) -> int:
        if self.method.confirm < 2:
            return 1
        return max(1, min(self.method.rounds, (self.budget - 1) // self.method.confirm))

    def trial(self, role: str = "candidate") -> bool:
        """Ask, measure (or reuse, or prune), tell; True when it took a trial of the budget."""
        import optuna

        from tuner.driver import study as st

        trial = self.study.ask()
        key = json.dumps(self.space.full_config(st.suggest(trial, self.space)), sort_keys=True)
        config = self.configs[key]
        if key in self.told and role == "candidate":  # reused: nothing measured
            self.study.tell(trial, self.told[key])
            return not self.method.reuse
        value = self.measure(key)
        best = max((r.value for r in self.ranked()), default=0.0)
        if (self.method.prune and role == "candidate" and self.rows and config.ok
                and value * config.screen_ratio < PRUNE_BELOW * best):
            trial.report(value * config.screen_ratio, 0)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self.wall += config.screen_wall_s
            return True
        trial.set_user_attr(st.METRICS, {"noisy": float(config.noisy)})
        self.study.tell(trial, value)
        self.told.setdefault(key, value)
        self.rows.append(Measured(key, value, role))
        self.wall += config.wall_s
        return role == "candidate"

    def sentinel_if_due(self) -> None:
        """The baseline again after `sentinel` measured trials since the last reference; off
        by more than the tolerance: that window measured again, then a sentinel again."""
        every = self.method.sentinel
        since = self.since_reference()
        if not every or len(since) < every:
            return
        while since:
            self.study.enqueue_trial(self.space.searched(self.configs[self.baseline_key].knobs))
            self.trial("sentinel")
            self.outcome.sentinels += 1
            ratio = self.rows[-1].value / self.rows[0].value
            if abs(ratio - 1) <= DRIFT_TOLERANCE:
                return
            self.outcome.drifted_windows += 1
            again = [r for r in since if r.role != "remeasure"]
            for row in since:
                row.drifted = True
            for row in again:
                self.study.enqueue_trial(self.space.searched(self.configs[row.key].knobs))
                self.trial("remeasure")
            since = self.since_reference() if again else []

    def since_reference(self) -> list[Measured]:
        last = max((i for i, r in enumerate(self.rows) if r.role == "sentinel" or i == 0),
                   default=-1)
        return [r for r in self.rows[last + 1:] if r.role in ("candidate", "remeasure")]

    # -- the confirmation ---------------------------------------------------------------
    def confirm(self, rounds: int) -> None:
        best: list[str] = []
        for row in self.ranked():
            if row.key not in best:
                best.append(row.key)
        best = best[: self.method.confirm]
        if not best:
            return
        for round_ in range(rounds):
            for key in best if round_ % 2 == 0 else best[::-1]:
                self.wall += self.configs[key].wall_s
                self.rows.append(Measured(key, self.measure(key), "confirm", pair=f"0:{round_}"))
                self.outcome.curve.append((self.wall, self.configs[self.reported()].truth))
        self.outcome.reported = self.reported()

    def reported(self) -> str:
        """The config the search reports best now, as tuner.driver.ranking.ranked does."""
        from tuner.driver import pairs
        from tuner.driver.ranking import Row

        confirming = [r for r in self.rows if r.role == "confirm"]
        by_config: dict[str, list[float]] = {}
        for row in confirming:
            by_config.setdefault(row.key, []).append(row.value)
        medians = {key: sorted(v)[(len(v) - 1) // 2] for key, v in by_config.items()}
        if not self.method.paired or len(medians) < 2:
            return max(medians, key=medians.__getitem__)
        rows = [Row(number=i, role="confirm", status="ok", reason="",
                    knobs=self.configs[r.key].knobs,
                    metrics={"samples_per_sec": r.value, "samples_per_dollar": r.value},
                    violation=0.0, pair=r.pair) for i, r in enumerate(confirming)]
        verdict = pairs.paired(rows, "samples_per_sec", self.configs[self.baseline_key].knobs)
        if verdict is None:
            return max(medians, key=medians.__getitem__)
        self.outcome.verdict = verdict
        named = json.dumps(verdict.named.knobs, sort_keys=True)
        self.outcome.runner_up = json.dumps(verdict.other.knobs, sort_keys=True)
        return named
