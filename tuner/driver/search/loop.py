"""`tuner search`: the loop. Ask the study for a config, admit it (run, reuse, skip), give it to
the executor, interpret its result, tell the study, record it; until the budget is spent.

The decisions live in collaborators (admit, results, records, summary, console); this module
holds the loop's state and its order of events.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError

from tuner.driver import envvars, hostlock
from tuner.driver import ranking as rk
from tuner.driver import recovery as rc
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.executors.base import Executor, Submitted
from tuner.driver.search import admit as ad
from tuner.driver.search import results as rs
from tuner.driver.search.console import Console, duration
from tuner.driver.search.hooks import SearchHooks
from tuner.driver.search.live import Display
from tuner.driver.search.records import Records, connect_tracker
from tuner.driver.search.schedule import Schedule, baseline_limit_hint
from tuner.driver.search.standing import UNCOUNTED
from tuner.driver.search.summary import Outcome, outcome_of, summary_of
from tuner.driver.search.tell import Teller
from tuner.driver.space import Space
from tuner.driver.space.resolved import as_params, resolved_yaml
from tuner.driver.storage import StorageFailed
from tuner.driver.stores import Locations, ensure_local_folders, preflight, redact
from tuner.errors import SearchAborted
from tuner.trial import UNSUPPORTED, TrialResult

WAIT_SLICE_S = 10.0
PROGRESS_NOTE_S = 120.0  # a line for trials running this long, so a quiet terminal is no hang


class Search:
    """One invocation of a search over one space (resuming its study if it exists), its trials
    run by `executor`."""

    def __init__(self, space: Space, where: Locations, executor: Executor,
                 study_name: str | None = None, trials: int | None = None,
                 timeout_s: float | None = None, out: Any = print,
                 experiment: str | None = None, hooks: SearchHooks | None = None,
                 start_tags: dict[str, str] | None = None, run_name: str | None = None,
                 command_line: str = "", verbosity: int = 0) -> None:
        self.space = space
        self.where = where
        self.executor = executor
        self.study_name = study_name or space.study
        self.experiment = experiment or self.study_name  # MLflow experiment (nightly: the space's)
        self.hooks = hooks or SearchHooks()
        self.start_tags = start_tags or {}
        self.run_name = run_name  # the MLflow parent run's name (default: search-TIME)
        self.command_line = command_line  # as typed, passwords masked: an artifact of the run
        # --timeout without --trials: the time is the budget (a user who gives 30 minutes
        # gets 30 minutes of search); None: no trial count
        self.trials_budget = trials or (None if timeout_s else space.budget.trials)
        self.timeout_s = timeout_s or space.budget.timeout_s
        self.console = Console(out, space.cost.currency, executor.room, self.study_name,
                               verbosity, space.measure.min_timed_steps)
        self.display = Display(self.console)  # the standing, and a live footer on a terminal
        self.running: dict[int, rs.Running] = {}
        self.submitted: list[Submitted] = []
        self.launched = 0
        self.to_run = 0
        self.unmeasured_in_a_row = 0  # proposals reused or skipped: nothing measured
        self.refused = 0  # trials whose process refused their config (unsupported here)
        self.study: Any = None
        self.storage: Any = None
        self.schedule: Schedule  # made when the study is open
        self.teller: Teller  # made when the search starts
        self.records: Records | None = None
        self.heartbeats: Any = None
        self._last_note = 0.0
        self._remote_tracker: Any = None  # connected before the executor starts

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self) -> Outcome:
        envvars.check()  # a bad TUNER_* variable: refused before anything starts
        preflight(self.where)  # bad folders, URLs, databases: refused before anything starts
        lock = None
        if self.executor.shares_this_host:
            lock = hostlock.acquire(self.study_name)  # before Ray: refused, nothing started
        try:
            if self.where.remote_tracking:  # an unreachable server: refused before Ray starts
                self._remote_tracker = connect_tracker(self.where, self.experiment,
                                                       self.study_name)
            # then the executor: a bad --ray-address must fail before any store is created
            self.executor.start()
            _interrupt_on_sigterm()  # after ray.init, which installs a SIGTERM handler of its own
            try:
                return self._run_started()
            finally:
                self.executor.shutdown()
        finally:
            if lock is not None:
                lock.close()

    def _run_started(self) -> Outcome:
        self._open_records_and_study()
        assert self.records is not None
        self.records.sync(rk.rows(self.study), only=None)  # what a killed search left unlogged
        done_before = self.schedule.budget_used()
        self.to_run = (UNCOUNTED if self.trials_budget is None
                       else self.trials_budget - done_before)
        if self.to_run <= 0:
            self.console.out(f"study {self.study_name} already holds {done_before} finished "
                             f"trials (budget {self.trials_budget}); nothing to run. Raise "
                             "--trials to run more.")
            return self._outcome()
        self._opening_lines(done_before)
        try:
            self.display.start(self.to_run, self.space.trial.max_concurrent, self.timeout_s)
            self._loop()
        except BaseException as error:
            self.display.stop()
            self._stop_after(error)
            raise
        self.display.stop()
        outcome = self._outcome()
        parent_closed = self._finish_parent(outcome, failed=False)
        # a search whose MLflow run could not be closed stays "not ended": the next search of
        # this study closes that run
        self.heartbeats.stop(ended=parent_closed)
        outcome.records_missing = self.records.final_sync(
            self.study, self.where, parent_closed, lambda: self._finish_parent(outcome, False))
        tracker = self.records.tracker
        outcome.mlflow_ids = (tracker.experiment_id, tracker.parent_run_id or "")
        return outcome

    def _stop_after(self, error: BaseException) -> None:
        """Stopped by `error` (Ctrl-C, SIGTERM, a storage that kept failing): close what can
        be closed, never hiding `error` behind a fault of the summary's own."""
        if not isinstance(error, StorageFailed):
            self.teller.abandon(self.running, "search interrupted")
        parent_closed = False
        try:
            parent_closed = self._finish_parent(self._outcome(), failed=True)
        except Exception as summary_error:  # noqa: BLE001 - the stop's own error is what matters
            self.console.out(f"warning: the search's summary could not be written: "
                             f"{type(summary_error).__name__}: {str(summary_error)[:200]}")
        finally:
            self.heartbeats.stop(ended=parent_closed)

    def _open_records_and_study(self) -> None:
        tracker = self._remote_tracker
        ensure_local_folders(self.where)
        if not self.where.remote_tracking:
            with hostlock.creating_sqlite(self.where.tracking_uri):
                tracker = connect_tracker(self.where, self.experiment, self.study_name)
        self.records = Records(tracker, self.console)
        with hostlock.creating_sqlite(self.where.storage):
            self.study, self.storage = rc.open_study(self.where, self.space, self.study_name,
                                                     self.console.out)
        self.schedule = Schedule(self.study, self.space, self.console, self.hooks,
                                 self.trials_budget, self.timeout_s)
        self.hooks.study_opened(self.study, self.storage)
        trial = self.space.trial
        rc.settle_running(self.study, trial.heartbeat_s, trial.grace_s, self.console.out)
        self.records.close_dead_searches(self.study, self.study_name, trial.grace_s)

    def _opening_lines(self, done_before: int) -> None:
        assert self.records is not None
        space, out = self.space, self.console.detail
        budget = (f"trials until the time budget of {duration(self.timeout_s)} is used or the "
                  f"space is exhausted ({done_before} already done)" if self.to_run >= UNCOUNTED
                  else f"{self.to_run} trials to run ({done_before} already done), time budget "
                  f"{duration(self.timeout_s)}")
        out(f"study {self.study_name}: {budget}; {space.size()} configs in the space")
        texts = {"space.resolved.yaml": resolved_yaml(space)}
        if self.command_line:
            texts["command.txt"] = self.command_line + "\n"
        parent = self.records.call(self.records.tracker.start_search, self.study_name,
                                   space.source, {"tuner.objective": " and ".join(space.objectives),
                                                  **self.start_tags}, self.run_name,
                                   as_params(space), texts)
        session = parent if isinstance(parent, str) else f"unlogged-{uuid.uuid4().hex}"
        self.heartbeats = rc.Heartbeats(self.study, session, space.trial.heartbeat_s,
                                        space.trial.grace_s, self.console.out)
        self.heartbeats.start()
        self.teller = Teller(self.study, space, self.records, self.heartbeats, self.console)
        out(f"{self.executor.describe()}; up to {space.trial.max_concurrent} trial(s) at a "
            f"time; mlflow: {redact(self.where.tracking_uri)}; storage: "
            f"{redact(self.where.storage)}")
        out(f"objective: {' and '.join(space.objectives)}; prices: "
            f"{space.cost.describe(space.devices())}")
        if "cuda" in space.devices() and not self.executor.cluster_gpus:
            out("note: this Ray cluster has no GPU: device=cuda trials are skipped and recorded "
                "as unsupported (give --ray-address of a cluster with GPU nodes)")
        self.console.started = self._last_note = time.monotonic()

    # -- scheduling ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while st.baseline_trial(self.study) is None:
            if st.baseline_running(self.study):  # another search of this study measures it
                self.console.once("waiting", "another search of this study is measuring the "
                                  "baseline: waiting for it")
                time.sleep(self.space.trial.heartbeat_s)
                rc.fail_stale(self.study)  # if that search died, its baseline is re-queued
                continue
            if not st.baseline_queued(self.study):
                st.enqueue_baseline(self.study, self.space)
            role = self._launch()  # the baseline runs alone: all are read against it
            self._drain(until_empty=True)
            if (role == st.BASELINE and st.baseline_trial(self.study) is None
                    and not st.baseline_queued(self.study)):  # a lost baseline is re-queued
                raise SearchAborted(
                    "the baseline trial failed, so there is nothing to compare against: "
                    + (rp.failure_lines(rk.rows(self.study))[-1:] or ["see MLflow"])[0]
                    + baseline_limit_hint(self.study, self.space))
        self.schedule.queue_first(*self._counts())
        while True:
            while (len(self.submitted) < self.space.trial.max_concurrent
                   and self.schedule.may_launch(*self._counts())):
                self.schedule.queue_next()
                self._launch()
            if not self.submitted:
                break
            self._drain(until_empty=False)

    def _drain(self, until_empty: bool) -> None:
        while self.submitted:
            finished = self.executor.wait_any(self.submitted, WAIT_SLICE_S)
            for item, result in finished:
                self.submitted.remove(item)
                self._finish(item.config.trial_number, result)
            if not finished:
                self._between_results()
            if not until_empty and len(self.submitted) < self.space.trial.max_concurrent:
                return

    def _between_results(self) -> None:
        """While trials run: retry MLflow if it was down, retry dead searches' trials, and say
        which trials are still going."""
        assert self.records is not None
        self.heartbeats.beat()  # this search's own trials are never stale to itself
        if not self.heartbeats.failing:  # its own beats fail: the storage cannot judge others
            rc.fail_stale(self.study)  # another search of this study died: its trials re-queued
        if self.records.retry_due():
            self.records.sync(rk.rows(self.study), only=set(self.records.unlogged))
        now = time.monotonic()
        note_due = now - self._last_note >= PROGRESS_NOTE_S
        if not (self.display.active or note_due):
            return  # nothing shows the phases now: no lookup while trials are timed
        phases = {number: self.executor.progress(running.item) if running.item is not None
                  else "" for number, running in self.running.items()}
        self.display.phases({number: (running.started, phases[number])
                             for number, running in self.running.items()})
        if self.display.active:
            return  # the footer says it; a line every few minutes only in a log
        self._last_note = now
        for number, running in self.running.items():
            if now - running.started >= PROGRESS_NOTE_S:
                self.console.still_running(number, now - running.started,
                                           running.time_limit_s, phases[number])

    def _counts(self) -> tuple[int, int, int]:
        return self.launched, self.to_run, self.unmeasured_in_a_row

    # -- one trial -----------------------------------------------------------------------------

    def _launch(self) -> str:
        assert self.records is not None
        trial = rc.ask(self.study)
        self.heartbeats.add(trial)
        knobs = st.suggest(trial, self.space)
        role = trial.user_attrs.get(st.ROLE, "candidate")
        trial.set_user_attr(st.KNOBS, knobs)
        self.launched += 1
        retry = rc.retry_of(self.study.get_trials(deepcopy=False)[trial.number])
        decision = ad.admit(self.study, self.space, self.executor, trial.number, knobs, role,
                            self.study_name, self.where.workdir)
        if isinstance(decision, ad.Reuse):
            self.launched -= 1  # nothing measured: the budget is for measurements
            self.unmeasured_in_a_row += 1
            self.teller.reuse(trial, decision.earlier, self._counter())
            return role
        if isinstance(decision, ad.Skip):  # known not to run here: not counted either
            self.launched -= 1
            self.unmeasured_in_a_row += 1
            self.teller.skip(trial, role, decision, self._counter())
            return role
        self.unmeasured_in_a_row = 0
        tags = {"tuner.role": role, "tuner.numerics": decision.key}
        if retry is not None:
            tags["tuner.retry_of"] = str(retry)
        self.records.start_trial(trial, knobs, tags, st.MLFLOW_RUN_ID)
        if role in (st.SENTINEL, st.REMEASURE):  # the sentinel's: one more, not the budget's
            self.to_run += 1
        item = self.executor.submit(decision.config)
        self.submitted.append(item)
        self.running[trial.number] = rs.Running(trial, knobs, role, decision.key, item=item,
                                                started=time.monotonic(),
                                                time_limit_s=decision.config.time_limit_s)
        self.console.started_line(self._counter(), trial.number, role, retry, item,
                                  decision.config.time_limit_s, self._changes(knobs))
        self.display.trial_started(trial.number, time.monotonic(), self.to_run)
        return role

    def _finish(self, trial_number: int, result: TrialResult) -> None:
        running = self.running.pop(trial_number)
        self.display.trial_finished(trial_number, running.started, time.monotonic())
        try:
            self._tell(running, result)
        except StorageFailed as error:  # what was measured is at least said
            raise StorageFailed(f"{error}; trial {trial_number} was not recorded: "
                                f"{self.console.measured(result)}") from None

    def _tell(self, running: rs.Running, result: TrialResult) -> None:
        trial_number = running.number
        verdict = rs.interpret(self.study, self.space, running, result)
        try:
            self.teller.record(running, verdict)
            if verdict.lost:  # not the config's doing: run again where Ray has room
                requeued, reason = self.teller.fail_and_requeue(
                    running.trial, result.reason, ": it runs again where the cluster has room")
                self.to_run += requeued  # its retry is one more trial for this search to run
                self.console.out(f"  trial {trial_number} lost: {reason}  "
                                 f"[{self.console.elapsed()}]")
                return
            self.teller.close(trial_number, values=verdict.values, state=verdict.state)
        except UpdateFinishedTrialError:  # failed as stale while this driver was paused
            self.teller.stale(trial_number, result)
            self.to_run += 1  # its re-queued retry: one more trial for this search, as for LOST
            return
        if result.status == UNSUPPORTED and self.refused < (self.trials_budget or UNCOUNTED):
            self.refused += 1  # it measured nothing: one more trial for this search (bounded)
            self.to_run += 1
        self.schedule.after_result(trial_number, running.role)
        best = (next(iter(rk.ranked(rk.rows(self.study), self.space.objective)), None)
                if result.ok else None)
        self.display.told(self.to_run, best)
        line = self.console.result_line(trial_number, result, verdict.metrics,
                                        verdict.violation, best)
        if result.ok and verdict.violation <= 0:
            self.console.detail(line)
        else:  # a failure or a rejection is said even with -q
            self.console.out(line)
            self.console.failed_log(trial_number, result)
        if verdict.run_again_with_s is not None:
            self._run_baseline_again(running, verdict.run_again_with_s)
        self.console.warn_if_niced(result)

    def _run_baseline_again(self, running: rs.Running, limit_s: float) -> None:
        step_s = running.trial.user_attrs.get(st.INFO, {}).get("progress", {}).get(
            "step_estimate_s", 0.0)
        seen = f" (a step took {duration(step_s)} here)" if step_s else ""
        st.enqueue_baseline(self.study, self.space)
        self.to_run += 1  # the baseline again: one more trial for this search, not the budget's
        self.console.out(f"  the baseline ran out of time{seen}: it runs again with a time "
                         f"limit of {duration(limit_s)} derived from what it measured (set "
                         "trial.time_limit_s to choose the limit)")

    # -- the end -------------------------------------------------------------------------------

    def _counter(self) -> str:
        return self.console.counter(self.launched, self.to_run)

    def _changes(self, knobs: dict[str, Any]) -> str:
        return rp.changes(knobs, self.space.full_config({}))

    def _outcome(self) -> Outcome:
        return outcome_of(self.study, self.space, self.where, self.study_name, self.launched)

    def _finish_parent(self, outcome: Outcome, failed: bool) -> bool:
        if self.records is None:
            return True
        summary = summary_of(outcome, self.study, self.space, self.where, self.console)
        metrics, tags, texts = self.hooks.summary_extras(outcome)
        summary.metrics.update(metrics)
        summary.tags.update(tags)
        summary.texts.update(texts)
        return self.records.call(self.records.tracker.finish_search, summary.metrics,
                                 summary.tags, summary.texts, summary.files, failed,
                                 summary.params, summary.steps) is not None


def _interrupt_on_sigterm() -> None:
    """A scheduler stops jobs with SIGTERM: treat it as Ctrl-C, so running trials are closed
    and recorded as interrupted instead of the process dying mid-write."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
