"""`tuner search`: the driver loop. Space -> study -> trial configs -> Ray -> results -> tell,
record, report. The only place where Optuna, Ray and MLflow meet.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner import cost, guard, hostlock, limits, priors
from tuner import recovery as rc
from tuner import report as rp
from tuner import study as st
from tuner.errors import SearchAborted, UserError
from tuner.knobs import numerics_key
from tuner.space import Space
from tuner.stores import Locations, ensure_local_folders, preflight, redact
from tuner.strategy import SWEEP
from tuner.trial import LOST, OOM, PRUNED, TIMEOUT, UNSUPPORTED, TrialConfig, TrialResult

MAX_REUSED_IN_A_ROW = 10  # proposals of measured configs in a row before the space counts as spent
FIRST_DONE = "first_enqueued"  # study attr: the configs given to this search were queued
PRIORS_DONE = "priors_enqueued"  # study attr: the hardware's known-good configs were queued
WAIT_SLICE_S = 10.0
PROGRESS_NOTE_S = 120.0  # a line for trials running this long, so a quiet terminal is no hang
# how often to retry MLflow writes that failed while the tracking server was unreachable
SYNC_RETRY_S = float(os.environ.get("TUNER_MLFLOW_RETRY_S", "30"))
# what the storage keeps of where and how a trial ran (the rest of result.info is transient)
INFO_KEPT = ("note", "node_id", "hostname", "env_set", "versions", "memory_limit_mb",
             "pinned_cores", "affinity", "preloaded", "torch_threads", "interop_threads",
             "placement", "memory_policy", "scenario", "gpu", "gpu_ids", "started_at",
             "ended_at", "device", "cpu_features", "gpu_capability", "niceness", "progress")
# at the end, how long to wait for an unreachable MLflow to answer again before giving up
FINAL_SYNC_WAIT_S = float(os.environ.get("TUNER_MLFLOW_WAIT_S", "30"))


@dataclass
class Outcome:
    study: str
    rows: list[rp.Row]
    table: str
    best_path: Path | None
    launched: int = 0
    records_missing: str | None = None  # what MLflow lacks at the end, if it stayed down


@dataclass
class _Running:
    trial: Any  # the optuna.Trial from ask()
    trial_number: int
    knobs: dict[str, Any]
    role: str
    key: str
    run_id: str | None
    item: Any = None  # the executor's handle: where to read the trial's progress
    started: float = field(default_factory=time.monotonic)
    time_limit_s: float = 0.0


class Search:
    """One invocation of a search over one space (resuming its study if it exists)."""

    def __init__(self, space: Space, where: Locations, study_name: str | None = None,
                 trials: int | None = None, timeout_s: float | None = None,
                 ray_address: str | None = None, out: Callable[[str], None] = print,
                 runtime_env: dict[str, Any] | None = None,
                 experiment: str | None = None,
                 first: list[tuple[dict[str, Any], str]] | None = None,
                 start_tags: dict[str, str] | None = None) -> None:
        self.space = space
        self.where = where
        self.study_name = study_name or space.study
        self.experiment = experiment or self.study_name  # MLflow experiment (nightly: the space's)
        self.first = first or []  # (config, role) queued right after the baseline
        self.start_tags = start_tags or {}
        self.run_name: str | None = None  # the MLflow parent run's name (default: search-TIME)
        self.trials_budget = trials or space.budget.trials
        self.timeout_s = timeout_s or space.budget.timeout_s
        self.ray_address = ray_address
        self.runtime_env = runtime_env
        self.out = out
        self.running: dict[int, _Running] = {}
        self.launched = 0
        self.reused_in_a_row = 0  # configs proposed again: reused, not counted
        self.unlogged: set[int] = set()  # finished trials MLflow has not heard of yet
        self.mlflow_down_since: float | None = None
        self.last_mlflow_failure = 0.0
        self.said_niced = False  # the niced-trial warning is given once

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        import ray

        from tuner.executor import RayExecutor

        preflight(self.where)  # bad folders, URLs, databases: refused before anything starts
        lock = None
        if self.ray_address is None and not ray.is_initialized():
            lock = hostlock.acquire(self.study_name)  # before Ray: refused, nothing started
        try:
            # Ray first: a bad --ray-address must fail before any store is created.
            self.executor = RayExecutor(self.ray_address, self.runtime_env)
            _interrupt_on_sigterm()  # after ray.init, which installs a SIGTERM handler of its own
            try:
                return self._run_with_ray()
            finally:
                self.executor.shutdown()
        finally:
            if lock is not None:
                lock.close()

    def _run_with_ray(self) -> Outcome:
        if self.where.remote_tracking:
            self.tracker = self._connect_tracker()  # an unreachable server: refused, nothing made
        ensure_local_folders(self.where)
        if not self.where.remote_tracking:
            with hostlock.creating_sqlite(self.where.tracking_uri):
                self.tracker = self._connect_tracker()
        with hostlock.creating_sqlite(self.where.storage):
            self.study = self._open_study()
        rc.settle_running(self.study, self.space.trial.heartbeat_s, self.space.trial.grace_s,
                          self.out)
        self._close_dead_searches()
        self._sync_mlflow(only=None)  # what a killed search or an outage left unlogged
        done_before = self._budget_used()
        self.to_run = self.trials_budget - done_before
        if self.to_run <= 0:
            self.out(f"study {self.study_name} already holds {done_before} finished trials "
                     f"(budget {self.trials_budget}); nothing to run. Raise --trials to run more.")
            return self._outcome()
        self.out(f"study {self.study_name}: {self.to_run} trials to run "
                 f"({done_before} already done), {self.space.size()} configs in the space, "
                 f"time budget {_duration(self.timeout_s)}")
        parent = self._mlflow(self.tracker.start_search, self.study_name, self.space.source,
                              {"tuner.objective": " and ".join(self.space.objectives),
                               **self.start_tags}, self.run_name)
        session = parent if isinstance(parent, str) else f"unlogged-{uuid.uuid4().hex}"
        self.heartbeats = rc.Heartbeats(self.study, session, self.space.trial.heartbeat_s)
        self.heartbeats.start()
        self.out(f"ray: {self.executor.describe()}; up to {self.space.trial.max_concurrent} "
                 f"trial(s) at a time; mlflow: {redact(self.where.tracking_uri)}; storage: "
                 f"{redact(self.where.storage)}")
        self.out(f"objective: {' and '.join(self.space.objectives)}; prices: "
                 f"{self.space.cost.describe(self.space.devices())}")
        if "cuda" in self.space.devices() and not self.executor.cluster_gpus:
            self.out("note: this Ray cluster has no GPU: device=cuda trials are skipped and "
                     "recorded as unsupported (give --ray-address of a cluster with GPU nodes)")
        self.started = time.monotonic()
        failed = False
        try:
            self._loop()
        except BaseException:
            failed = True
            self._abandon_running("search interrupted")
            raise
        finally:
            outcome = self._outcome()
            self.parent_closed = self._finish_parent(outcome, failed)
            # a search whose MLflow run could not be closed stays "not ended": the next search
            # of this study closes that run
            self.heartbeats.stop(ended=self.parent_closed)
        self._final_sync(outcome, failed)
        return outcome

    def _open_study(self) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.storage = rc.open_storage(self.where.storage, self.space.trial.heartbeat_s,
                                           self.space.trial.grace_s)
            return st.open_study(self.space, self.storage, self.study_name)
        except (SQLAlchemyError, ImportError, OSError) as error:
            first = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
            raise UserError(f"--storage: cannot open the study storage {redact(self.where.storage)}: "
                            f"{type(error).__name__}: {first[:200]}") from None

    def _connect_tracker(self) -> Any:
        from tuner.tracking import Tracker

        try:
            return Tracker(self.where.tracking_uri, self.experiment, self.where.artifact_root,
                           self.study_name)
        except Exception as error:  # noqa: BLE001 - any failure here is a bad --tracking-uri
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise UserError(f"--tracking-uri: cannot use MLflow at {redact(self.where.tracking_uri)}: "
                            f"{type(error).__name__}: {first} (start the server, or leave the "
                            "flag out for a local sqlite:///tuner-runs/mlflow.db)") from None

    def _loop(self) -> None:
        from tuner.executor import Submitted

        submitted: list[Submitted] = []
        while st.baseline_trial(self.study) is None:
            if st.baseline_running(self.study):  # another search of this study measures it
                self._wait_for_other_baseline()
                continue
            if not st.baseline_queued(self.study):
                st.enqueue_baseline(self.study, self.space)
            role = self._launch_into(submitted)  # the baseline runs alone: all read against it
            self._drain(submitted, until_empty=True)
            if (role == st.BASELINE and st.baseline_trial(self.study) is None
                    and not st.baseline_queued(self.study)):  # a lost baseline is re-queued
                raise SearchAborted(
                    "the baseline trial failed, so there is nothing to compare against: "
                    + (rp.failure_lines(rp.rows(self.study))[-1:] or ["see MLflow"])[0]
                    + self._baseline_limit_hint())
        self._queue_priors()
        queued = st.enqueue_first(self.study, self.space, self.first, FIRST_DONE)
        queued += st.enqueue_try_first(self.study, self.space)
        if queued:
            self.out(f"queued {queued} config(s) to try next (warm start and the space's "
                     "try_first)" if self.first else
                     f"queued the space's {queued} try_first config(s) next")
        while True:
            while (len(submitted) < self.space.trial.max_concurrent and self._may_launch()):
                self._queue_confirmations()
                self._queue_sweep()
                self._launch_into(submitted)
            if not submitted:
                break
            self._drain(submitted, until_empty=False)

    def _baseline_limit_hint(self) -> str:
        """For a baseline that ran out of time twice: the flag, with a limit to try."""
        last = [row for row in rp.rows(self.study) if row.role == st.BASELINE][-1:]
        if not last or last[0].status != TIMEOUT:
            return ""
        tried = self.study.user_attrs.get(st.BASELINE_LIMIT, self.space.trial.time_limit_s)
        return (f"; give it more time: --set trial.time_limit_s={int(2 * tried)} (or fewer "
                "steps: measure.timed_steps, a smaller workload)")

    def _queue_priors(self) -> None:
        """Known-good configs for the machine the baseline ran on, next (once per study)."""
        baseline = st.baseline_trial(self.study)
        if not self.space.sampler.priors or baseline is None or not self._may_launch():
            return  # none queued for a later search to find ahead of its own queue
        configs = priors.prior_configs(self.space, baseline.user_attrs.get(st.INFO, {}))
        if st.enqueue_first(self.study, self.space, configs, PRIORS_DONE):
            self.out(f"queued known-good config(s) for this hardware next: "
                     f"{priors.describe(configs)}")

    def _queue_confirmations(self) -> None:
        """At the budget's last `budget.confirm` trials: the best configs not yet confirmed,
        measured again in fresh trials (once per budget: a resumed, larger one confirms its
        own best)."""
        count = self.space.budget.confirmations(self.trials_budget)
        if (not count or self.study.user_attrs.get(st.CONFIRM_DONE) == self.trials_budget
                or self._budget_used() < self.trials_budget - count):
            return
        best = rp.unconfirmed(rp.rows(self.study), self.space.objective)[:count]
        for row in best:
            self.study.enqueue_trial(self.space.searched(row.knobs),
                                     user_attrs={st.ROLE: st.CONFIRM, st.CONFIRMS: row.number})
        self.study.set_user_attr(st.CONFIRM_DONE, self.trials_budget)  # a larger budget: again
        if best:
            self.out(f"confirming the best {len(best)} config(s), a fresh measurement each "
                     f"(trial(s) {', '.join(str(row.number) for row in best)}); the best is "
                     "reported from these")

    def _queue_sweep(self) -> None:
        """The one-knob-at-a-time sweep's next configs, when nothing else is queued; says
        once when the sweep has settled every knob and the sampler takes over."""
        if st.enqueue_sweep(self.study, self.space):
            return
        if (self.space.sampler.start == SWEEP and not getattr(self, "_said_swept", False)
                and st.sweep_done(self.study, self.space)):
            self.out(f"sweep done (every knob settled one at a time); "
                     f"{self.space.sampler.name} proposes from here")
            self._said_swept = True

    def _wait_for_other_baseline(self) -> None:
        if not getattr(self, "_said_waiting", False):
            self.out("another search of this study is measuring the baseline: waiting for it")
            self._said_waiting = True
        time.sleep(self.space.trial.heartbeat_s)
        rc.fail_stale(self.study)  # if that search died, its baseline is re-queued for us

    def _budget_used(self) -> int:
        """Trials that count against the budget: finished for a reason of their own (not
        interrupted by a stopped search, those are re-queued; not a config proposed again,
        whose result was reused without measuring) or running, in any search."""
        counted = 0
        for trial in self.study.get_trials(deepcopy=False):
            if trial.state == TrialState.RUNNING or (
                    trial.state.is_finished() and not rc.is_interrupted(trial)
                    and st.DUPLICATE_OF not in trial.user_attrs
                    and st.RUN_AGAIN not in trial.user_attrs):
                counted += 1
        return counted

    def _may_launch(self) -> bool:
        if self.launched >= self.to_run or self._budget_used() >= self.trials_budget:
            return False
        if self.reused_in_a_row >= MAX_REUSED_IN_A_ROW:
            if not getattr(self, "_said_exhausted", False):
                self.out(f"the sampler proposed {self.reused_in_a_row} measured configs in a row: "
                         "the space looks exhausted; no new trials")
                self._said_exhausted = True
            return False
        if time.monotonic() - self.started >= self.timeout_s:
            if not getattr(self, "_said_timeout", False):
                self.out(f"time budget of {_duration(self.timeout_s)} reached: no new trials")
                self._said_timeout = True
            return False
        return True

    def _drain(self, submitted: list[Any], until_empty: bool) -> None:
        while submitted:
            finished = self.executor.wait_any(submitted, WAIT_SLICE_S)
            for item, result in finished:
                submitted.remove(item)
                self._finish(item.config.trial_number, result)
            if not finished:
                self._between_results()
            if not until_empty and len(submitted) < self.space.trial.max_concurrent:
                return

    def _between_results(self) -> None:
        """While trials run: retry MLflow if it was down, retry dead searches' trials, and say
        which trials are still going."""
        rc.fail_stale(self.study)  # another search of this study died: its trials re-queued
        if self.unlogged and time.monotonic() - self.last_mlflow_failure >= SYNC_RETRY_S:
            self._sync_mlflow(only=set(self.unlogged))
        self._progress_note()

    # -- one trial -----------------------------------------------------------------------------

    def _launch_into(self, submitted: list[Any]) -> str:
        trial = rc.ask(self.study)
        self.heartbeats.add(trial)
        knobs = st.suggest(trial, self.space)
        role = trial.user_attrs.get(st.ROLE, "candidate")
        trial.set_user_attr(st.KNOBS, knobs)
        self.launched += 1
        retry = rc.retry_of(self.study.get_trials(deepcopy=False)[trial.number])
        duplicate = (None if role == st.CONFIRM
                     else st.same_config_trial(self.study, knobs, trial.number))
        if duplicate is not None:
            self.launched -= 1  # nothing measured: the budget is for measurements
            self.reused_in_a_row += 1
            self._reuse(trial, duplicate)
            return role
        self.reused_in_a_row = 0
        known = st.known_unsupported(self.study, knobs)
        if known is not None:
            self._skip(trial, role, UNSUPPORTED, known)
            return role
        too_big = st.known_out_of_memory(self.study, knobs)
        if too_big is not None:
            self._skip(trial, role, OOM, too_big)
            return role
        nowhere = self.executor.unschedulable(knobs)
        if nowhere is not None:
            st.remember_unsupported(self.study, *nowhere)
            self._skip(trial, role, UNSUPPORTED, nowhere[1])
            return role
        key = numerics_key(knobs)
        cached = st.guard_cache(self.study)
        run_guard = role == st.BASELINE or key not in cached
        time_limit_s = self.space.trial.time_limit_s
        if role == st.BASELINE:  # a baseline that ran out of time runs again with more
            time_limit_s = max(time_limit_s, self.study.user_attrs.get(st.BASELINE_LIMIT, 0))
        config = TrialConfig(
            study=self.study_name, trial_number=trial.number, workload=self.space.workload,
            knobs=knobs, measure=self.space.measure, guard=self.space.guard.settings(run_guard),
            time_limit_s=time_limit_s, seed=self.space.guard.seed,
            memory_limit_mb=self.space.trial.memory_mb,
            memory_share=self.space.trial.max_concurrent,
            exclusive_cores=self.space.trial.max_concurrent > 1,
            cache_dir=str((self.where.workdir / "cache").resolve()),
            stop_below=0.0 if role in (st.BASELINE, st.CONFIRM) else self._cut(knobs),
        )
        tags = {"tuner.role": role, "tuner.numerics": key}
        if retry is not None:
            tags["tuner.retry_of"] = str(retry)
        run_id = self._start_run(trial, knobs, tags)
        item = self.executor.submit(config)
        submitted.append(item)
        self.running[trial.number] = _Running(trial, trial.number, knobs, role, key, run_id,
                                              item=item, time_limit_s=time_limit_s)
        again = f", retry of trial {retry}" if retry is not None else ""
        gpus = f", {item.gpus} GPU" if item.gpus else ""
        verb = "waits for room on the cluster" if item.waiting else "started"
        self.out(f"{self._progress()} trial {trial.number} {verb} ({role}{again}, {item.cpus} "
                 f"CPUs{gpus}, limit {_duration(config.time_limit_s)}): {self._changes(knobs)}")
        return role

    def _cut(self, knobs: dict[str, Any]) -> float:
        """Samples/s below which this trial stops at screening: measure.prune_below x the best
        ranked trial so far on its device; 0 (never) when screening is off or the study has
        two objectives (a slow config may still be the cheapest)."""
        settings = self.space.measure
        if settings.prune_below <= 0 or settings.screen_s <= 0 or len(self.space.objectives) > 1:
            return 0.0
        device = str(knobs.get("device", "cpu"))
        speeds = [row.samples_per_sec for row in rp.ranked(rp.rows(self.study), "samples_per_sec")
                  if row.device == device]
        return settings.prune_below * max(speeds) if speeds else 0.0

    def _reuse(self, trial: Any, earlier: Any) -> None:
        """Same knobs as a completed trial: tell its result again instead of re-measuring."""
        for name in (st.METRICS, st.STATUS, st.REASON, st.CONSTRAINT, st.INFO):
            if name in earlier.user_attrs:
                trial.set_user_attr(name, earlier.user_attrs[name])
        trial.set_user_attr(st.DUPLICATE_OF, earlier.number)
        trial.set_constraint(st.CONSTRAINT, float(earlier.user_attrs.get(st.CONSTRAINT, 0.0)))
        self._start_run(trial, trial.user_attrs[st.KNOBS], {"tuner.role": "candidate",
                                                            "tuner.duplicate_of": str(earlier.number)})
        self._close(trial.number, values=earlier.values)
        self.out(f"{self._progress()} trial {trial.number} has the config of trial "
                 f"{earlier.number}: result reused, nothing re-measured (not counted against "
                 "the budget)")

    def _skip(self, trial: Any, role: str, status: str, reason: str) -> None:
        """A config known not to run (a choice found unsupported, a batch size known to run out
        of memory, a GPU the cluster lacks): skipped without starting a process."""
        trial.set_user_attr(st.STATUS, status)
        trial.set_user_attr(st.REASON, reason)
        if status == OOM:
            trial.set_constraint(st.CONSTRAINT, 1.0)  # infeasible: the sampler moves away
        self._start_run(trial, trial.user_attrs[st.KNOBS], {"tuner.role": role})
        self._close(trial.number, state=TrialState.PRUNED)
        self.out(f"{self._progress()} trial {trial.number} skipped, not started: {reason}")

    def _start_run(self, trial: Any, knobs: dict[str, Any], tags: dict[str, str]) -> str | None:
        """The trial's MLflow run, its id kept in the trial (None while MLflow is down)."""
        run_id = self._mlflow(self.tracker.start_trial, trial.number, knobs, tags)
        if run_id is not None:
            trial.set_user_attr(st.MLFLOW_RUN_ID, run_id)
        return run_id

    def _finish(self, trial_number: int, result: TrialResult) -> None:
        running = self.running.pop(trial_number)
        metrics = dict(result.metrics)
        violation = 0.0
        if result.ok:
            metrics.update(self._derived(running, result))
            violation = metrics.get("guard_violation", 0.0)
            if violation > 0:
                result.reason = self._guard_reason(metrics, result.info.get("scenario", "train"))
        if result.status == UNSUPPORTED and result.info.get("unsupported_choice"):
            st.remember_unsupported(self.study, result.info["unsupported_choice"], result.reason)
        if result.status == OOM:  # larger batches with the same numerics are skipped from now on
            st.remember_out_of_memory(self.study, running.knobs, trial_number)
            running.trial.set_constraint(st.CONSTRAINT, 1.0)  # and the sampler learns it
        info = {key: result.info[key] for key in INFO_KEPT if key in result.info}
        attrs = {st.STATUS: result.status, st.REASON: result.reason, st.METRICS: metrics,
                 st.CONSTRAINT: violation, st.STEP_TIMES: result.step_times_s,
                 st.GUARD_LOSSES: result.guard_losses, st.INFO: info}
        for name, attr in attrs.items():
            running.trial.set_user_attr(name, attr)
        if result.ok:
            running.trial.set_constraint(st.CONSTRAINT, violation)
            self._close(trial_number, values=[metrics[name] for name in self.space.objectives])
        elif result.status == PRUNED:  # what the sampler sees of it: where it stood when cut
            running.trial.report(metrics["samples_per_sec"], int(metrics.get("timed_steps", 0)))
            self._close(trial_number, state=TrialState.PRUNED)
        elif result.status == LOST:  # not the config's doing: run again where Ray has room
            requeued, reason = self._fail_and_requeue(
                running.trial, result.reason, ": it runs again where the cluster has room")
            self.to_run += requeued  # its retry is one more trial for this search to run
            self.out(f"  trial {trial_number} lost: {reason}  "
                     f"[{_duration(time.monotonic() - self.started)}]")
            return
        else:
            if result.status == TIMEOUT and running.role == st.BASELINE:
                self._plan_baseline_again(running, result)  # before closing: not counted
            # PRUNED, unlike FAIL, is seen by the sampler: it learns which choices and batch
            # sizes do not run
            self._close(trial_number, state=(TrialState.PRUNED if result.status in (UNSUPPORTED, OOM)
                                             else TrialState.FAIL))
        self.out(self._result_line(trial_number, running, result, metrics, violation))
        if running.trial.user_attrs.get(st.RUN_AGAIN):
            self._run_baseline_again(running)
        self._warn_if_niced(result)

    def _plan_baseline_again(self, running: _Running, result: TrialResult) -> None:
        """The baseline ran out of time: unless it already ran again once, mark it to run again
        (it then counts against no budget) with a limit sized from the steps it timed."""
        if st.BASELINE_LIMIT in self.study.user_attrs:
            return  # it had its second chance: the search stops, naming the flag
        progress = result.info.get("progress", {})
        limit = limits.derived_limit_s(progress, self.space.measure,
                                       self.space.guard.settings(True), running.time_limit_s)
        self.study.set_user_attr(st.BASELINE_LIMIT, limit)
        running.trial.set_user_attr(st.RUN_AGAIN, limit)

    def _run_baseline_again(self, running: _Running) -> None:
        limit = running.trial.user_attrs[st.RUN_AGAIN]
        step_s = running.trial.user_attrs.get(st.INFO, {}).get("progress", {}).get(
            "step_estimate_s", 0.0)
        seen = f" (a step took {_duration(step_s)} here)" if step_s else ""
        st.enqueue_baseline(self.study, self.space)
        self.to_run += 1  # the baseline again: one more trial for this search, not the budget's
        self.out(f"  the baseline ran out of time{seen}: it runs again with a time limit of "
                 f"{_duration(limit)} derived from what it measured (set trial.time_limit_s "
                 "to choose the limit)")

    def _warn_if_niced(self, result: TrialResult) -> None:
        niceness = result.info.get("niceness", 0)
        if niceness and not self.said_niced:
            self.said_niced = True
            self.out(f"warning: trial processes run at niceness {niceness} (inherited from Ray's "
                     "workers; resetting it needs root): other work on the node preempts the "
                     "timed steps. Start the Ray nodes with RAY_worker_niceness=0")

    def _close(self, trial_number: int, values: list[float] | None = None,
               state: TrialState | None = None) -> None:
        """Tell Optuna, then write the MLflow record from what the storage now holds. Optuna
        first: it is the record of truth, and a record MLflow misses is written later."""
        try:
            self.study.tell(trial_number, values=values, state=state)
        except UpdateFinishedTrialError:
            self.out(f"warning: trial {trial_number} was failed as stale meanwhile (no heartbeat "
                     f"for {self.space.trial.grace_s} s: storage too slow?); it is re-queued")
        self.heartbeats.remove(trial_number)
        self.unlogged.add(trial_number)
        row = rp.row_of(self.study.get_trials(deepcopy=False)[trial_number])
        if self._mlflow(self.tracker.record_trial, row) is not None:
            self.unlogged.discard(trial_number)

    def _mlflow(self, call: Callable[..., Any], *args: Any, force: bool = False) -> Any:
        """An MLflow write that may fail: the search goes on, what was missed is written when
        the server answers again. Says so once per outage."""
        if (not force and self.mlflow_down_since is not None
                and time.monotonic() - self.last_mlflow_failure < SYNC_RETRY_S):
            return None  # down a moment ago: do not wait on it again for every trial
        try:
            result = call(*args)
        except Exception as error:  # noqa: BLE001 - any tracking failure is an outage
            self.last_mlflow_failure = time.monotonic()
            if self.mlflow_down_since is None:
                self.mlflow_down_since = time.monotonic()
                first = (str(error).strip().splitlines() or [""])[0][:160]
                self.out(f"warning: MLflow unreachable ({type(error).__name__}: {first}); the "
                         "search goes on, the Optuna storage keeps every result, and MLflow gets "
                         "them when it answers again")
            return None
        if self.mlflow_down_since is not None:
            self.out(f"MLflow answers again after {_duration(time.monotonic() - self.mlflow_down_since)}")
            self.mlflow_down_since = None
        return result if result is not None else True

    def _sync_mlflow(self, only: set[int] | None) -> None:
        from tuner.tracking import sync_trials

        written = self._mlflow(sync_trials, self.tracker, rp.rows(self.study), only, force=True)
        if written is None:
            return
        self.unlogged -= set(only) if only is not None else set(self.unlogged)
        if isinstance(written, list) and written:
            self.out(f"MLflow brought up to date: trial(s) {', '.join(map(str, written))} logged")

    def _final_sync(self, outcome: Outcome, failed: bool) -> None:
        """At the end: bring MLflow up to date, waiting a little for a server that is down;
        then say plainly what MLflow lacks (the outcome carries it; the CLI exits with 3)."""
        deadline = time.monotonic() + FINAL_SYNC_WAIT_S
        while True:
            self._sync_mlflow(only=None)
            if not self.parent_closed and self.mlflow_down_since is None:
                self.parent_closed = self._finish_parent(outcome, failed)
                if self.parent_closed:
                    rc.mark_session_ended(self.study, self.tracker.parent_run_id or "", "closed")
            if (self.mlflow_down_since is None and self.parent_closed) \
                    or time.monotonic() >= deadline:
                break
            time.sleep(5)
        missing = []
        if self.unlogged:
            missing.append(f"trial(s) {', '.join(map(str, sorted(self.unlogged)))}")
        if not self.parent_closed:
            missing.append("this search's summary run")
        if missing:
            outcome.records_missing = (
                f"MLflow at {redact(self.where.tracking_uri)} is unreachable: "
                f"{' and '.join(missing)} missing there; the Optuna storage "
                f"({redact(self.where.storage)}) holds every trial. "
                "Run the same command again when MLflow is back to log them")

    def _close_dead_searches(self) -> None:
        """MLflow parent runs of searches of this study that were killed: closed as FAILED."""
        searches = self._mlflow(self.tracker.running_searches, self.study_name)
        for run_id, started_s in searches if isinstance(searches, list) else []:
            if not rc.search_is_dead(self.study, run_id, started_s, self.space.trial.grace_s):
                continue  # a live search of this study, elsewhere
            closed = self._mlflow(self.tracker.close_run, run_id, "FAILED",
                                  {"tuner.end": "its search stopped without closing this run "
                                                "(killed, or MLflow was unreachable)"})
            if closed is not None:
                rc.mark_session_ended(self.study, run_id, "closed by a later search")
                self.out(f"closed the MLflow run of an earlier search that was killed ({run_id})")

    def _derived(self, running: _Running, result: TrialResult) -> dict[str, float]:
        """Metrics the driver adds: cost, speed-up, guard verdict (from the cache if not run)."""
        derived: dict[str, float] = {}
        sps = result.metrics["samples_per_sec"]
        price = self.space.cost.price_for(running.knobs.get("device", "cpu"))
        derived["price_per_hour"] = price
        derived["samples_per_dollar"] = cost.samples_per_dollar(sps, price)
        if running.role == st.BASELINE:
            derived["speedup"] = 1.0
            if result.guard_loss is not None:
                self.study.set_user_attr(st.GUARD_REFERENCE, result.guard_loss)
        else:
            base = st.baseline_trial(self.study)
            if base is not None:
                derived["speedup"] = sps / base.user_attrs[st.METRICS]["samples_per_sec"]
        if result.guard_loss is not None:
            st.remember_guard(self.study, running.key, result.guard_loss)
        loss = result.guard_loss
        if loss is None:
            loss = st.guard_cache(self.study).get(running.key)
        reference = self.study.user_attrs.get(st.GUARD_REFERENCE)
        if loss is not None and reference is not None:
            derived["guard_loss"] = loss
            derived["guard_reference"] = reference
            derived["guard_violation"] = guard.violation(
                loss, reference, self.space.guard.tolerance, self.space.guard.mode)
            if math.isinf(derived["guard_violation"]):
                derived["guard_violation"] = 1e9  # storable, still > 0
        return derived

    def _guard_reason(self, metrics: dict[str, float], scenario: str = "train") -> str:
        g = self.space.guard
        loss, ref = metrics["guard_loss"], metrics["guard_reference"]
        moved = abs(loss - ref) / abs(ref) if g.mode == "relative" else abs(loss - ref)
        unit = "%" if g.mode == "relative" else ""
        scale = 100 if g.mode == "relative" else 1
        what = ("quality" if scenario == "infer"  # the workload's metric on real data
                else f"guard loss (mean over {g.steps + 1} steps)")
        return (f"{what} {loss:.4f} vs baseline {ref:.4f}: moved "
                f"{moved * scale:.3g}{unit}, tolerance {g.tolerance * scale:.3g}{unit}")

    def _abandon_running(self, reason: str) -> None:
        """Interrupted (Ctrl-C, SIGTERM): close the running trials as interrupted, re-queued
        for the next search of this study, and close their MLflow runs as FAILED."""
        for trial_number, running in list(self.running.items()):
            try:
                running.trial.set_user_attr(st.STATUS, rc.INTERRUPTED)
                self._fail_and_requeue(running.trial, reason, "")
            except Exception as error:  # noqa: BLE001 - best effort while shutting down
                self.out(f"warning: could not close trial {trial_number}: {error}")
        self.running.clear()

    def _fail_and_requeue(self, trial: Any, reason: str, then: str) -> tuple[bool, str]:
        """A trial that did nothing wrong (its search stopped, its node was lost): its config
        queued again, unless it has been re-run MAX_RETRIES times already; then the trial
        closed as FAIL with the reason saying which. Returns (re-queued, that reason)."""
        requeued = rc.requeue(self.study, trial.number)
        reason += (f"; re-queued{then}" if requeued else
                   f"; not re-queued: its config was cut short {rc.MAX_RETRIES + 1} times")
        trial.set_user_attr(st.REASON, reason)
        self._close(trial.number, state=TrialState.FAIL)
        return requeued, reason

    def _progress_note(self) -> None:
        """A line every few minutes while long trials run, so a quiet terminal is not a hang."""
        now = time.monotonic()
        if now - getattr(self, "_last_note", self.started) < PROGRESS_NOTE_S:
            return
        self._last_note = now
        for running in self.running.values():
            if now - running.started < PROGRESS_NOTE_S:
                continue
            phase = self.executor.progress(running.item) if running.item is not None else ""
            self.out(f"  trial {running.trial_number} still running: "
                     f"{_duration(now - running.started)} of its "
                     f"{_duration(running.time_limit_s)} limit" + (f"; {phase}" if phase else ""))

    # -- output --------------------------------------------------------------------------------

    def _progress(self) -> str:
        width = len(str(self.to_run))
        return f"[{self.launched:>{width}}/{self.to_run}]"

    def _changes(self, knobs: dict[str, Any]) -> str:
        return rp.changes(knobs, self.space.full_config({}))

    def _result_line(self, number: int, running: _Running, result: TrialResult,
                     metrics: dict[str, float], violation: float) -> str:
        elapsed = _duration(time.monotonic() - self.started)
        if not result.ok:
            return f"  trial {number} {result.status}: {result.reason}  [{elapsed}]"
        verdict = "REJECTED" if violation > 0 else "ok"
        if metrics.get("noisy"):
            verdict = (f"NOISY after {metrics.get('measure_rounds', 1):.0f} rounds, never "
                       "ranked")
        speedup = metrics.get("speedup", 0.0)
        line = (f"  trial {number} {verdict}: {metrics['samples_per_sec']:.2f} samples/s "
                f"({speedup:.2f}x baseline), {metrics['samples_per_dollar']:,.0f} "
                f"samples/{self.space.cost.currency}, cv {metrics['step_time_cv']:.1%}")
        if metrics.get("compile_s"):
            line += f", compile {metrics['compile_s']:.1f} s"
        if "gpu_peak_reserved_mb" in metrics:
            line += f", GPU peak {metrics['gpu_peak_reserved_mb']:,.0f} MB"
        if violation > 0:
            line += f"; {result.reason}"
        best = rp.ranked(rp.rows(self.study), self.space.objective)
        if best:
            line += f"  | best {best[0].samples_per_sec:.2f} samples/s (trial {best[0].number})"
        return line + f"  [{elapsed}]"

    def _outcome(self) -> Outcome:
        all_rows = rp.rows(self.study)
        table = rp.format_table(all_rows, self.space.objective, max_cv=self.space.max_cv,
                                currency=self.space.cost.currency,
                                objectives=self.space.objectives)
        best = rp.best_config(all_rows, self.space.objective, self.study_name,
                              self.space.objectives)
        best_path = rp.export_best(best, self.where.best_folder) if best else None
        return Outcome(self.study_name, all_rows, table, best_path, self.launched)

    def _finish_parent(self, outcome: Outcome, failed: bool) -> bool:
        tracker = getattr(self, "tracker", None)
        if tracker is None:
            return True
        base = rp.baseline_row(outcome.rows)
        best = rp.ranked(outcome.rows, self.space.objective)
        metrics: dict[str, float] = {"trials_finished": float(len(outcome.rows))}
        tags: dict[str, str] = {}
        if base is not None:
            metrics["baseline_samples_per_sec"] = base.samples_per_sec
        if best:
            metrics["best_samples_per_sec"] = best[0].samples_per_sec
            metrics["best_samples_per_dollar"] = best[0].metrics.get("samples_per_dollar", 0.0)
            metrics["best_speedup"] = best[0].metrics.get("speedup", 0.0)
            tags["tuner.best_trial"] = str(best[0].number)
            tags["tuner.best_config"] = rp.changes(best[0].knobs, base.knobs if base else None)
        cheapest = rp.cheapest_line(outcome.rows, self.space.cost.currency)
        if cheapest:
            tags["tuner.most_samples_per_dollar"] = cheapest[:5000]
        tags["tuner.prices"] = self.space.cost.describe(self.space.devices())
        texts = {"summary.txt": outcome.table + "\n\n" + "\n".join(rp.failure_lines(outcome.rows)),
                 "summary.md": rp.markdown_summary(outcome.rows, self.space.objective,
                                                   self.space.cost.currency,
                                                   self.space.objectives)}
        texts["fingerprint.json"] = self._fingerprint(outcome)
        files = [outcome.best_path] if outcome.best_path else []
        files += self._plots(outcome)
        extra_metrics, extra_tags, extra_texts = self._extras(outcome)
        metrics.update(extra_metrics)
        tags.update(extra_tags)
        texts.update(extra_texts)
        return self._mlflow(tracker.finish_search, metrics, tags, texts, files, failed) is not None

    def _plots(self, outcome: Outcome) -> list[Path]:
        """Figures for the MLflow review; a figure that cannot be drawn is left out, never a
        reason to lose the search's record."""
        from tuner import plots

        folder = self.where.workdir / "plots" / self.study_name
        made = []
        try:
            made.append(plots.history_plot(outcome.rows, self.space.objective,
                                           folder / "optimization_history.png"))
            made.append(plots.importance_plot(self.study, self.space.objective,
                                              folder / "knob_importance.png"))
            if len(self.space.objectives) > 1 or len(self.space.devices()) > 1:
                made.append(plots.pareto_plot(outcome.rows, self.space.objectives,
                                              folder / "pareto_front.png",
                                              self.space.cost.currency))
        except Exception as error:  # noqa: BLE001 - a plot is a convenience
            self.out(f"warning: a plot for MLflow could not be drawn: {type(error).__name__}: "
                     f"{error}")
        return [path for path in made if path is not None]

    def _fingerprint(self, outcome: Outcome) -> str:
        """Hardware and libraries: the driver's, and the trial processes' as the baseline saw
        them (a nightly comparison across a library update needs both)."""
        import json

        from tuner.tracking import host_fingerprint, library_versions

        base = rp.baseline_row(outcome.rows)
        worker = {key: base.info[key] for key in ("hostname", "versions", "gpu", "torch_threads")
                  if base is not None and key in base.info}
        return json.dumps({"driver": {"host": host_fingerprint(), "versions": library_versions()},
                           "baseline_trial": worker}, indent=2, sort_keys=True)

    def _extras(self, outcome: Outcome) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
        """What a subclass adds to the parent run: metrics, tags, text artifacts."""
        return {}, {}, {}


def _interrupt_on_sigterm() -> None:
    """A scheduler stops jobs with SIGTERM: treat it as Ctrl-C, so running trials are closed
    and recorded as interrupted instead of the process dying mid-write."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
