"""What the search runs next, and when it stops starting trials: the baseline's followers
(known-good configs, warm start, try_first), the sweep, the confirmations at the budget's end,
and the budget itself (trials, time, a space measured out).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from optuna.trial import TrialState

from tuner.driver import priors, transfer
from tuner.driver import ranking as rk
from tuner.driver import recovery as rc
from tuner.driver import study as st
from tuner.driver.search.console import Console, duration
from tuner.driver.search.hooks import SearchHooks
from tuner.driver.search.sentinel import Sentinel
from tuner.driver.space import Space
from tuner.driver.strategy import SWEEP, config_key
from tuner.trial import TIMEOUT, UNSUPPORTED

# proposals in a row that measured nothing (a config measured already, or known not to run
# here) before the space counts as spent
MAX_UNMEASURED_IN_A_ROW = 10
FIRST_DONE = "first_enqueued"  # study attr: the configs given to this search were queued
PRIORS_DONE = "priors_enqueued"  # study attr: the hardware's known-good configs were queued
TRANSFER_DONE = "transfer_enqueued"  # study attr: other studies' best configs were queued


class Schedule:
    """Queues configs into the study and says whether another trial may start."""

    def __init__(self, study: Any, space: Space, console: Console, hooks: SearchHooks,
                 trials_budget: int | None, timeout_s: float) -> None:
        self.study = study
        self.space = space
        self.console = console
        self.hooks = hooks
        self.trials_budget = trials_budget  # None: a budget of time only
        self.timeout_s = timeout_s
        # what marks this budget's confirmations as queued: the trial count, or (time only)
        # this search's start
        self.confirm_mark: int | str = (trials_budget if trials_budget is not None
                                        else f"until {time.time() + timeout_s:.0f}")
        self.sentinel = Sentinel(study, space, console, trials_budget)

    def queue_next(self) -> None:
        """Before a launch: the confirmations once the budget's end is near, a drift sentinel
        when one is due, the sweep's next config when nothing else waits."""
        self.queue_confirmations()
        self.sentinel.queue_if_due()
        self.queue_sweep()

    def after_result(self, number: int, role: str) -> None:
        if role == st.SENTINEL:
            self.sentinel.judge(number)

    def queue_first(self, launched: int, to_run: int, unmeasured_in_a_row: int) -> None:
        """After the baseline: the hardware's known-good configs (once per study), then the
        hooks' configs and the space's try_first."""
        baseline = st.baseline_trial(self.study)
        if (self.space.sampler.priors and baseline is not None
                and self.may_launch(launched, to_run, unmeasured_in_a_row)):
            configs = priors.prior_configs(self.space, baseline.user_attrs.get(st.INFO, {}))
            if st.enqueue_first(self.study, self.space, configs, PRIORS_DONE):
                self.console.detail(f"queued known-good config(s) for this hardware next: "
                                    f"{priors.describe(configs)}")
        first = self.hooks.first_configs()
        if not first and baseline is not None:  # nightly brings its own earlier nights
            self._queue_transfer(baseline.user_attrs.get(st.INFO, {}))
        queued = st.enqueue_first(self.study, self.space, first, FIRST_DONE)
        queued += st.enqueue_try_first(self.study, self.space)
        if queued:
            self.console.detail(f"queued {queued} config(s) to try next (warm start and the "
                                "space's try_first)" if first else
                                f"queued the space's {queued} try_first config(s) next")

    def _queue_transfer(self, here: dict[str, Any]) -> None:
        """Once per study: the best configs of other studies of this workload, the most
        similar machines first, named with their source."""
        if not self.space.sampler.transfer or self.study.user_attrs.get(TRANSFER_DONE):
            return
        found = transfer.sources(self.study._storage, self.study.study_name,
                                 self.study.user_attrs.get(st.WORKLOAD, {}), here)
        picked = transfer.transfer_configs(self.space, found, self.space.sampler.transfer)
        if st.enqueue_first(self.study, self.space, [(c, role) for c, role, _ in picked],
                            TRANSFER_DONE):
            for source in {id(s): s for _, _, s in picked}.values():
                configs = [c for c, _, s in picked if s is source]
                self.console.detail(
                    f"warm start from study {source.study} (similarity {source.similarity:.2f}: "
                    f"{source.why}): queued {priors.describe([(c, '') for c in configs])}")
        self.study.set_user_attr(TRANSFER_DONE, True)

    def queue_confirmations(self) -> None:
        """At the budget's end: the best configs not yet confirmed, measured again in fresh
        trials, in interleaved rounds (A B, B A, ...: `pairs`), once per budget (a resumed,
        larger one confirms its own best)."""
        budget, must = self.space.budget, self.hooks.must_confirm()
        count = budget.confirmations(self.trials_budget)
        if must is not None and budget.confirm is None and (self.trials_budget or 4) >= 4:
            count = max(count, 2)  # nightly: a change of champion is judged by pairs
        rounds = budget.confirmation_rounds(self.trials_budget, count)
        if (not count or self.study.user_attrs.get(st.CONFIRM_DONE) == self.confirm_mark
                or not self._near_the_end(count * rounds)):
            return
        best = _with(rk.unconfirmed(rk.rows(self.study), self.space.objective), count,
                     must, self.space.searched)
        if not best or (self.trials_budget is None and len(best) < count):
            return  # a time budget waits until it has the configs to pair
        rounds = budget.confirmation_rounds(self.trials_budget, len(best))
        for round_ in range(rounds):  # who goes first alternates: no order effect
            for row in best if round_ % 2 == 0 else best[::-1]:
                self.study.enqueue_trial(self.space.searched(row.knobs), user_attrs={
                    st.ROLE: st.CONFIRM, st.CONFIRMS: row.number,
                    st.PAIR: f"{self.confirm_mark}:{round_}"})
        self.study.set_user_attr(st.CONFIRM_DONE, self.confirm_mark)  # a larger budget: again
        if len(best) > 1:
            self.console.detail(
                f"confirming the best {len(best)} configs (trials "
                f"{', '.join(str(row.number) for row in best)}) in {rounds} interleaved "
                f"round(s), each a fresh trial: the best is decided from these, by their "
                "ratio and its interval")
        elif best:
            self.console.detail(f"confirming the best config (trial {best[0].number}), a "
                                "fresh measurement: the best is reported from it")

    def _near_the_end(self, count: int) -> bool:
        """Within the budget's last `count` trials: by count, or (time only) when the time
        left holds `count` + 1 trials at this search's mean trial time."""
        if self.trials_budget is not None:
            return self.budget_used() >= self.trials_budget - count
        durations = self.console.standing.trial_durations_s
        if not durations:
            return False
        mean_s = sum(durations) / len(durations)
        left_s = self.timeout_s - (time.monotonic() - self.console.started)
        return left_s <= (count + 1) * mean_s / self.space.trial.max_concurrent

    def queue_sweep(self) -> None:
        """The one-knob-at-a-time sweep's next configs, when nothing else is queued; says
        once when the sweep has settled every knob and the sampler takes over."""
        if st.enqueue_sweep(self.study, self.space):
            return
        if (self.space.sampler.start == SWEEP and not self.console.said("swept")
                and st.sweep_done(self.study, self.space)):  # asked no more once it is
            self.console.once("swept", f"sweep done (every knob settled one at a time); "
                              f"{self.space.sampler.name} proposes from here")

    def budget_used(self) -> int:
        """Trials that count against the budget: finished for a reason of their own (not
        interrupted by a stopped search, those are re-queued; not a config proposed again,
        whose result was reused without measuring; not a choice this machine cannot run,
        skipped or refused by its trial process) or running, in any search. The budget is
        for measurements."""
        return sum(1 for trial in self.study.get_trials(deepcopy=False)
                   if trial.state == TrialState.RUNNING or (
                       trial.state.is_finished() and not rc.is_interrupted(trial)
                       and not _unmeasured(trial.user_attrs)))

    def may_launch(self, launched: int, to_run: int, unmeasured_in_a_row: int) -> bool:
        if launched >= to_run or (self.trials_budget is not None
                                  and self.budget_used() >= self.trials_budget):
            return False
        if unmeasured_in_a_row >= MAX_UNMEASURED_IN_A_ROW:
            self.console.once("exhausted", f"the sampler proposed {unmeasured_in_a_row} "
                              "configs in a row that were measured already or cannot run "
                              "here: the space looks exhausted; no new trials")
            return False
        if time.monotonic() - self.console.started >= self.timeout_s:
            self.console.once("timeout", f"time budget of {duration(self.timeout_s)} reached: "
                              "no new trials")
            return False
        return True



def _unmeasured(attrs: dict[str, Any]) -> bool:
    """A finished trial the budget does not count: it measured nothing of its own config
    (reused, skipped, refused, run again with more time) or was the drift sentinel's."""
    return (st.DUPLICATE_OF in attrs or st.RUN_AGAIN in attrs or st.SKIPPED in attrs
            or attrs.get(st.STATUS) == UNSUPPORTED
            or attrs.get(st.ROLE) in (st.SENTINEL, st.REMEASURE))  # the sentinel's own


def baseline_limit_hint(study: Any, space: Space) -> str:
    """For a baseline that ran out of time twice: the flag, with a limit to try."""
    last = [row for row in rk.rows(study) if row.role == st.BASELINE][-1:]
    if not last or last[0].status != TIMEOUT:
        return ""
    tried = study.user_attrs.get(st.BASELINE_LIMIT, space.trial.time_limit_s)
    return (f"; give it more time: --set trial.time_limit_s={int(2 * tried)} (or fewer "
            "steps: measure.timed_steps, a smaller workload)")


def _with(ranked: list[rk.Row], count: int, must: dict[str, Any] | None,
          searched: Callable[[dict[str, Any]], dict[str, Any]]) -> list[rk.Row]:
    """The `count` best, the config `must` among them (in the last place) if it was measured
    and is not there already; configs compared by the knobs the space searches."""
    best = ranked[:count]
    if must is None or count < 2:
        return best
    key = config_key(searched(must))
    if any(config_key(searched(row.knobs)) == key for row in best):
        return best
    wanted = next((row for row in ranked if config_key(searched(row.knobs)) == key), None)
    return best if wanted is None else best[:-1] + [wanted]
