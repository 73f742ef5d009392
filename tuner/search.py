"""`tuner search`: the driver loop. Space -> study -> trial configs -> Ray -> results -> tell,
record, report. The only place where Optuna, Ray and MLflow meet.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from tuner import cost, guard
from tuner import report as rp
from tuner import study as st
from tuner.errors import SearchAborted, UserError
from tuner.knobs import numerics_key
from tuner.space import Space
from tuner.trial import OK, UNSUPPORTED, TrialConfig, TrialResult

DEFAULT_WORKDIR = Path("tuner-runs")
WAIT_SLICE_S = 30.0
HEARTBEAT_S = 120.0


@dataclass(frozen=True)
class Locations:
    """Where a search keeps its records; all created on demand, after validation."""

    storage: str
    tracking_uri: str
    artifact_root: Path | None
    best_folder: Path
    workdir: Path


def locations(space: Space, workdir: Path, storage: str | None = None,
              tracking_uri: str | None = None) -> Locations:
    workdir = workdir.resolve()
    storage = storage or space.storage or f"sqlite:///{workdir / 'optuna.db'}"
    tracking_uri = tracking_uri or space.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    check_storage_url(storage)
    check_tracking_uri(tracking_uri)
    local_tracking = tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri
    return Locations(storage=storage, tracking_uri=tracking_uri,
                     artifact_root=workdir / "mlartifacts" if local_tracking else None,
                     best_folder=workdir / "best", workdir=workdir)


def check_storage_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise UserError(f"--storage: {url!r} is not a database URL; use e.g. "
                        "sqlite:///tuner.db or postgresql://user@host/db") from None


def check_tracking_uri(uri: str) -> None:
    schemes = ("sqlite:", "file:", "http:", "https:", "postgresql", "mysql", "databricks")
    if "://" in uri and not uri.startswith(schemes):
        raise UserError(f"--tracking-uri: unsupported scheme in {uri!r}; use sqlite:///mlflow.db, "
                        "http://host:5000, file:/path or a local folder")


def ensure_local_folders(where: Locations) -> None:
    for url in (where.storage, where.tracking_uri):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    where.workdir.mkdir(parents=True, exist_ok=True)


@dataclass
class Outcome:
    study: str
    rows: list[rp.Row]
    table: str
    best_path: Path | None
    launched: int = 0


@dataclass
class _Running:
    trial: Any  # the optuna.Trial from ask()
    trial_number: int
    knobs: dict[str, Any]
    role: str
    key: str
    run_id: str
    started: float = field(default_factory=time.monotonic)


class Search:
    """One invocation of a search over one space (resuming its study if it exists)."""

    def __init__(self, space: Space, where: Locations, study_name: str | None = None,
                 trials: int | None = None, timeout_s: float | None = None,
                 ray_address: str | None = None, out: Callable[[str], None] = print) -> None:
        self.space = space
        self.where = where
        self.study_name = study_name or space.study
        self.trials_budget = trials or space.budget.trials
        self.timeout_s = timeout_s or space.budget.timeout_s
        self.ray_address = ray_address
        self.out = out
        self.running: dict[int, _Running] = {}
        self.launched = 0

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        from tuner.executor import RayExecutor

        # Ray first: a bad --ray-address must fail before any store is created.
        self.executor = RayExecutor(self.ray_address)
        _interrupt_on_sigterm()  # after ray.init, which installs a SIGTERM handler of its own
        try:
            return self._run_with_ray()
        finally:
            self.executor.shutdown()

    def _run_with_ray(self) -> Outcome:
        from tuner.tracking import Tracker

        ensure_local_folders(self.where)
        self.study = st.open_study(self.space, self.where.storage, self.study_name)
        done_before = len(st.finished_trials(self.study))
        self.to_run = self.trials_budget - done_before
        if self.to_run <= 0:
            self.out(f"study {self.study_name} already holds {done_before} finished trials "
                     f"(budget {self.trials_budget}); nothing to run. Raise --trials to run more.")
            return self._outcome()
        self.out(f"study {self.study_name}: {self.to_run} trials to run "
                 f"({done_before} already done), {self.space.size()} configs in the space, "
                 f"time budget {_duration(self.timeout_s)}")
        self.tracker = Tracker(self.where.tracking_uri, self.study_name, self.where.artifact_root)
        self.tracker.start_search(self.study_name, self.space.source,
                                  {"tuner.objective": self.space.objective})
        self.out(f"ray: {self.executor.node_cpus} CPUs per node; up to "
                 f"{self.space.trial.max_concurrent} trial(s) at a time; "
                 f"mlflow: {self.where.tracking_uri}; storage: {self.where.storage}")
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
            self._finish_parent(outcome, failed)
        return outcome

    def _loop(self) -> None:
        from tuner.executor import Submitted

        submitted: list[Submitted] = []
        if st.baseline_trial(self.study) is None:
            if not st.baseline_queued(self.study):
                st.enqueue_baseline(self.study, self.space)
            self._launch_into(submitted)  # the baseline runs alone: every result reads against it
            self._drain(submitted, until_empty=True)
            if st.baseline_trial(self.study) is None:
                raise SearchAborted(
                    "the baseline trial failed, so there is nothing to compare against: "
                    + (rp.failure_lines(rp.rows(self.study))[-1:] or ["see MLflow"])[0])
        while True:
            while (len(submitted) < self.space.trial.max_concurrent and self._may_launch()):
                self._launch_into(submitted)
            if not submitted:
                break
            self._drain(submitted, until_empty=False)

    def _may_launch(self) -> bool:
        if self.launched >= self.to_run:
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
                self._heartbeat()
            if not until_empty and len(submitted) < self.space.trial.max_concurrent:
                return

    # -- one trial -----------------------------------------------------------------------------

    def _launch_into(self, submitted: list[Any]) -> None:
        trial = self.study.ask()
        knobs = st.suggest(trial, self.space)
        role = trial.user_attrs.get(st.ROLE, "candidate")
        trial.set_user_attr(st.KNOBS, knobs)
        self.launched += 1
        duplicate = st.same_config_trial(self.study, knobs, trial.number)
        if duplicate is not None:
            self._reuse(trial, duplicate)
            return
        key = numerics_key(knobs)
        cached = st.guard_cache(self.study)
        run_guard = role == st.BASELINE or key not in cached
        config = TrialConfig(
            study=self.study_name, trial_number=trial.number, workload=self.space.workload,
            knobs=knobs, measure=self.space.measure, guard=self.space.guard.settings(run_guard),
            time_limit_s=self.space.trial.time_limit_s, seed=self.space.guard.seed,
        )
        run_id = self.tracker.start_trial(trial.number, knobs,
                                          {"tuner.role": role, "tuner.numerics": key})
        trial.set_user_attr(st.MLFLOW_RUN_ID, run_id)
        item = self.executor.submit(config)
        submitted.append(item)
        self.running[trial.number] = _Running(trial, trial.number, knobs, role, key, run_id)
        self.out(f"{self._progress()} trial {trial.number} started ({role}, {item.cpus} CPUs, "
                 f"limit {_duration(config.time_limit_s)}): {self._changes(knobs)}")

    def _reuse(self, trial: Any, earlier: Any) -> None:
        """Same knobs as a completed trial: tell its result again instead of re-measuring."""
        for name in (st.METRICS, st.STATUS, st.REASON, st.CONSTRAINT):
            if name in earlier.user_attrs:
                trial.set_user_attr(name, earlier.user_attrs[name])
        trial.set_user_attr(st.DUPLICATE_OF, earlier.number)
        trial.set_constraint(st.CONSTRAINT, float(earlier.user_attrs.get(st.CONSTRAINT, 0.0)))
        run_id = self.tracker.start_trial(trial.number, trial.user_attrs[st.KNOBS], {
            "tuner.role": "candidate", "tuner.duplicate_of": str(earlier.number)})
        trial.set_user_attr(st.MLFLOW_RUN_ID, run_id)
        self.study.tell(trial, values=earlier.value)
        reused = TrialResult(status=earlier.user_attrs.get(st.STATUS, OK),
                             reason=f"same config as trial {earlier.number}; result reused")
        self.tracker.finish_trial(run_id, reused, earlier.user_attrs.get(st.METRICS, {}), {})
        self.out(f"{self._progress()} trial {trial.number} has the config of trial "
                 f"{earlier.number}: result reused, nothing re-measured")

    def _finish(self, trial_number: int, result: TrialResult) -> None:
        running = self.running.pop(trial_number)
        metrics = dict(result.metrics)
        violation = 0.0
        tags = {"tuner.role": running.role}
        if result.ok:
            metrics.update(self._derived(running, result))
            violation = metrics.get("guard_violation", 0.0)
            if violation > 0:
                result.reason = self._guard_reason(metrics)
            value = metrics[self.space.objective]
        attrs = {st.STATUS: result.status, st.REASON: result.reason, st.METRICS: metrics,
                 st.CONSTRAINT: violation, "node_id": result.info.get("node_id", ""),
                 "env_set": result.info.get("env_set", {})}
        for name, attr in attrs.items():
            running.trial.set_user_attr(name, attr)
        if result.ok:
            running.trial.set_constraint(st.CONSTRAINT, violation)
            self.study.tell(trial_number, values=value)
        else:
            state = TrialState.PRUNED if result.status == UNSUPPORTED else TrialState.FAIL
            self.study.tell(trial_number, state=state)
        tags["tuner.verdict"] = ("rejected" if violation > 0 else "accepted") if result.ok else ""
        self.tracker.finish_trial(running.run_id, result, metrics, tags)
        self.out(self._result_line(trial_number, running, result, metrics, violation))

    def _derived(self, running: _Running, result: TrialResult) -> dict[str, float]:
        """Metrics the driver adds: cost, speed-up, guard verdict (from the cache if not run)."""
        derived: dict[str, float] = {}
        sps = result.metrics["samples_per_sec"]
        derived["samples_per_dollar"] = cost.samples_per_dollar(sps,
                                                                self.space.cost.price_per_hour)
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

    def _guard_reason(self, metrics: dict[str, float]) -> str:
        g = self.space.guard
        loss, ref = metrics["guard_loss"], metrics["guard_reference"]
        moved = abs(loss - ref) / abs(ref) if g.mode == "relative" else abs(loss - ref)
        unit = "%" if g.mode == "relative" else ""
        scale = 100 if g.mode == "relative" else 1
        return (f"guard loss {loss:.4f} vs baseline {ref:.4f} (mean over {g.steps + 1} steps): moved "
                f"{moved * scale:.3g}{unit}, tolerance {g.tolerance * scale:.3g}{unit}")

    def _abandon_running(self, reason: str) -> None:
        for trial_number, running in list(self.running.items()):
            try:
                self.study.tell(trial_number, state=TrialState.FAIL)
                self.tracker.finish_trial(running.run_id, TrialResult(status="failed",
                                                                      reason=reason), {}, {})
            except Exception as error:  # noqa: BLE001 - best effort while shutting down
                self.out(f"warning: could not close trial {trial_number}: {error}")
        self.running.clear()

    def _heartbeat(self) -> None:
        """A line every few minutes while long trials run, so a quiet terminal is not a hang."""
        now = time.monotonic()
        if now - getattr(self, "_last_heartbeat", self.started) < HEARTBEAT_S:
            return
        self._last_heartbeat = now
        for running in self.running.values():
            if now - running.started < HEARTBEAT_S:
                continue
            self.out(f"  trial {running.trial_number} still running: "
                     f"{_duration(now - running.started)} of its "
                     f"{_duration(self.space.trial.time_limit_s)} limit")

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
        speedup = metrics.get("speedup", 0.0)
        line = (f"  trial {number} {verdict}: {metrics['samples_per_sec']:.2f} samples/s "
                f"({speedup:.2f}x baseline), {metrics['samples_per_dollar']:,.0f} "
                f"samples/{self.space.cost.currency}, cv {metrics['step_time_cv']:.1%}")
        if metrics.get("compile_s"):
            line += f", compile {metrics['compile_s']:.1f} s"
        if violation > 0:
            line += f"; {result.reason}"
        best = rp.ranked(rp.rows(self.study), self.space.objective)
        if best:
            line += f"  | best {best[0].samples_per_sec:.2f} samples/s (trial {best[0].number})"
        return line + f"  [{elapsed}]"

    def _outcome(self) -> Outcome:
        all_rows = rp.rows(self.study)
        table = rp.format_table(all_rows, self.space.objective, max_cv=self.space.max_cv,
                                currency=self.space.cost.currency)
        best = rp.best_config(all_rows, self.space.objective, self.study_name)
        best_path = rp.export_best(best, self.where.best_folder) if best else None
        return Outcome(self.study_name, all_rows, table, best_path, self.launched)

    def _finish_parent(self, outcome: Outcome, failed: bool) -> None:
        tracker = getattr(self, "tracker", None)
        if tracker is None:
            return
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
        texts = {"summary.txt": outcome.table + "\n\n" + "\n".join(rp.failure_lines(outcome.rows))}
        files = [outcome.best_path] if outcome.best_path else []
        try:
            tracker.finish_search(metrics, tags, texts, files, failed=failed)
        except Exception as error:  # noqa: BLE001 - the Optuna storage stays the record of truth
            self.out(f"warning: could not finish the MLflow parent run: {error}")


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
