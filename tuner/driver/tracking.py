"""MLflow records: one parent run per search, one nested run per trial.

Only the driver writes here. Names are stable across trials (knob names as params, metric
names with units) so the MLflow UI's run comparison lines trials up directly. Every trial
record is written from what the Optuna storage holds (a `Row`), so a record MLflow missed (a
server outage, a killed search) can be written again later, identically: `sync_trials`.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from tuner.driver.ranking import Row

# An unreachable tracking server must cost seconds, not MLflow's default minutes of retries:
# the search goes on and logs what it missed when the server is back.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # one line a run, on stdout


# MLflow 3's UI opens an experiment in its GenAI (traces) view unless told it holds model
# training runs; ours are runs with params and metrics, compared in the runs table.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


TRIAL_LOG = "trial.log"  # a failed trial's traceback and output, an artifact of its run

# The search's run samples this machine's CPU, memory, disk and network (MLflow's system
# metrics, "system/..."): every 10 s, averaged over 3 samples, a point every 30 s; MLflow's
# MLFLOW_SYSTEM_METRICS_* variables override these, MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false
# turns it off. A sample costs microseconds: nothing a timed trial notices.
SYSTEM_METRICS_INTERVAL_S = 10
SYSTEM_METRICS_SAMPLES = 3


def _now_ms() -> int:
    return int(time.time() * 1000)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("tuner", "torch", "torchvision", "optuna", "ray", "mlflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def host_fingerprint() -> dict[str, str]:
    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu_model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                              if line.startswith("model name")), cpu_model)
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "cpu_model": cpu_model,
            "cpu_count": str(os.cpu_count()), "platform": platform.platform()}


class Tracker:
    """Writes a search and its trials to an MLflow tracking store."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None,
                 study: str | None = None) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic", "urllib3"):  # after import: mlflow sets its levels then
            logging.getLogger(noisy).setLevel(logging.ERROR)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.system_metrics: Any = None  # MLflow's monitor of this machine, while a search runs
        existing = self.client.get_experiment_by_name(experiment)
        if existing is not None:
            self.experiment_id = existing.experiment_id
            if existing.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        else:
            location = (artifact_root / experiment).resolve().as_uri() if artifact_root else None
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING})
        self.parent_run_id: str | None = None
        # trial number -> a run created whose params could not be written (the server went
        # away between the two calls): the trial's record is written to it, not to a new run
        self.half_started: dict[int, str] = {}
        self.strays: list[str] = []  # older RUNNING runs of a trial, found by trial_runs
        self.study = study or experiment  # nightly studies of one space share its experiment

    def start_search(self, study: str, space_source: str, tags: dict[str, str],
                     run_name: str | None = None, params: dict[str, str] | None = None,
                     texts: dict[str, str] | None = None) -> str:
        """The search's parent run: its tags, the space's settings as params, and `texts`
        (the resolved space, the command line) as artifacts."""
        from mlflow.entities import Param

        run_tags = {
            "tuner.study": study, "tuner.space": space_source, "tuner.kind": "search",
            **{f"host.{key}": value for key, value in host_fingerprint().items()},
            **{f"version.{key}": value for key, value in library_versions().items()},
            **tags,
        }
        run = self.client.create_run(self.experiment_id, tags=run_tags,
                                     run_name=(run_name or
                                               f"search-{time.strftime('%Y%m%d-%H%M%S')}"))
        self.parent_run_id = run.info.run_id
        self.system_metrics = start_system_metrics(self.parent_run_id, self.tracking_uri)
        if params:
            self.client.log_batch(self.parent_run_id, params=[
                Param(key, value) for key, value in params.items()])
        for artifact_file, text in (texts or {}).items():
            self.client.log_text(self.parent_run_id, text, artifact_file)
        return self.parent_run_id

    def start_trial(self, trial_number: int, knobs: dict[str, Any], tags: dict[str, str]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{trial_number:03d}",
            tags={"mlflow.parentRunId": self.parent_run_id or "", "tuner.trial": str(trial_number),
                  "tuner.kind": "trial", "tuner.study": self.study, **tags},
        )
        params = [Param(name, str(value)) for name, value in sorted(knobs.items())]
        try:
            self.client.log_batch(run.info.run_id, params=params)
        except Exception:
            self.half_started[trial_number] = run.info.run_id  # record_trial completes it
            raise
        return run.info.run_id

    def record_trial(self, row: Row, existing: Any = None) -> str:
        """Write a finished trial's record and close its run (creating the run if the trial
        never got one). `existing`: its MLflow run as found by `trial_runs`, if any."""
        from mlflow.entities import Metric, Param, RunTag

        run_id = existing.info.run_id if existing is not None else row.run_id
        adopted = self.half_started.pop(row.number, None) if run_id is None else None
        if adopted is not None:  # its run was created, its params never written: no second run
            self.client.log_batch(adopted, params=[Param(name, str(value)) for name, value
                                                   in sorted(row.knobs.items())])
            run_id = adopted
        if run_id is None:
            run_id = self.start_trial(row.number, row.knobs, trial_tags(row))
        already_logged = existing is not None and bool(existing.data.metrics)
        now = _now_ms()
        batch: list[Metric] = []
        if not already_logged:
            batch = [Metric(name, float(value), now, 0)
                     for name, value in sorted(row.metrics.items()) if value is not None]
            batch += [Metric("step_time_s", float(t), now, index)
                      for index, t in enumerate(row.step_times_s)]
            batch += [Metric("guard_loss_curve", float(loss), now, index)
                      for index, loss in enumerate(row.guard_losses)]
        tags = [RunTag(key, value) for key, value in {**trial_tags(row),
                                                       **outcome_tags(row)}.items()]
        for start in range(0, max(len(batch), 1), 900):  # MLflow takes 1000 items a batch
            self.client.log_batch(run_id, metrics=batch[start:start + 900],
                                  tags=tags if start == 0 else [])
        if row.log:
            self.client.log_text(run_id, row.log, TRIAL_LOG)
        self.client.set_terminated(run_id, status="FINISHED" if row.status == "ok" else "FAILED")
        return run_id

    def trial_runs(self) -> dict[int, Any]:
        """This study's trial runs by trial number (the newest, if a number has several: an
        older one still RUNNING is a stray, closed by `sync_trials`)."""
        runs: dict[int, Any] = {}
        self.strays = []
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id],
                                           filter_string=("tags.`tuner.kind` = 'trial' and "
                                                          f"tags.`tuner.study` = '{self.study}'"),
                                           max_results=1000, page_token=token,
                                           order_by=["attributes.start_time ASC"])
            for run in page:
                number = run.data.tags.get("tuner.trial", "")
                if number.isdigit():
                    older = runs.get(int(number))
                    if older is not None and older.info.status == "RUNNING":
                        self.strays.append(older.info.run_id)
                    runs[int(number)] = run
            token = page.token
            if not token:
                return runs

    def running_searches(self, study: str) -> list[tuple[str, float]]:
        """(run id, start time in s) of this study's search runs still marked RUNNING."""
        runs = self.client.search_runs(
            [self.experiment_id], max_results=1000,
            filter_string=(f"tags.`tuner.kind` = 'search' and tags.`tuner.study` = '{study}' "
                           "and attributes.status = 'RUNNING'"))
        return [(run.info.run_id, run.info.start_time / 1000) for run in runs
                if run.info.run_id != self.parent_run_id]

    def close_run(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, status=status)

    def finish_search(self, metrics: dict[str, float], tags: dict[str, str],
                      texts: dict[str, str], files: list[Path], failed: bool = False,
                      params: dict[str, str] | None = None,
                      steps: list[tuple[str, float, int]] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        if self.parent_run_id is None:
            return
        now = _now_ms()
        logged = self.client.get_run(self.parent_run_id).data.params
        self.client.log_batch(
            self.parent_run_id,
            metrics=[Metric(name, float(value), now, 0) for name, value in metrics.items()],
            tags=[RunTag(key, value) for key, value in tags.items()],
            # a param is written once: a search summarised again (MLflow was down) keeps it
            params=[Param(key, value) for key, value in (params or {}).items()
                    if key not in logged],
        )
        stepped = [Metric(name, float(value), now, step) for name, value, step in steps or []]
        for start in range(0, len(stepped), 900):  # MLflow takes 1000 items a batch
            self.client.log_batch(self.parent_run_id, metrics=stepped[start:start + 900])
        for artifact_file, text in texts.items():
            self.client.log_text(self.parent_run_id, text, artifact_file)
        for path in files:
            self.client.log_artifact(self.parent_run_id, str(path))
        self.stop_system_metrics()
        self.client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")

    def stop_system_metrics(self) -> None:
        """Write the last samples of this machine's load, and stop sampling."""
        monitor, self.system_metrics = self.system_metrics, None
        if monitor is not None:
            monitor.finish()


def start_system_metrics(run_id: str, tracking_uri: str) -> Any:
    """MLflow's system-metrics monitor on `run_id` (a thread), or None when turned off or
    unavailable: a search never fails for want of its machine's load curve."""
    if os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").lower() in ("false", "0"):
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                       samples_before_logging=SYSTEM_METRICS_SAMPLES,
                                       tracking_uri=tracking_uri)
        monitor.start()
    except Exception:  # noqa: BLE001 - psutil missing, an MLflow without the module
        return None
    return monitor


def trial_tags(row: Row) -> dict[str, str]:
    """Tags a trial run carries from its start."""
    tags = {"tuner.role": row.role or "candidate"}
    if row.duplicate_of is not None:
        tags["tuner.duplicate_of"] = str(row.duplicate_of)
    if row.retry_of is not None:
        tags["tuner.retry_of"] = str(row.retry_of)
    return tags


def outcome_tags(row: Row) -> dict[str, str]:
    info = row.info
    return {
        "tuner.status": row.status,
        "tuner.reason": row.reason[:4000],
        "tuner.verdict": row.verdict,
        "tuner.note": str(info.get("note", "")),
        "tuner.node_id": str(info.get("node_id", "")),
        "tuner.hostname": str(info.get("hostname", "")),
        "tuner.env_set": " ".join(f"{k}={v}" for k, v in sorted(info.get("env_set", {}).items())),
        "tuner.affinity": ",".join(map(str, info.get("affinity", []))),
        "tuner.preloaded": " ".join(info.get("preloaded", [])),
        "tuner.gpu": str(info.get("gpu", "")),
        "tuner.gpu_ids": ",".join(map(str, info.get("gpu_ids", []))),
        **{f"version.{name}": str(value) for name, value in info.get("versions", {}).items()},
    }


def sync_trials(tracker: Tracker, finished: list[Row], only: set[int] | None = None) -> list[int]:
    """Make MLflow agree with the study storage for these finished trials: create what is
    missing, close what was left RUNNING, correct a status that changed (a trial whose search
    was killed after MLflow heard of it). Returns the trial numbers it wrote."""
    runs = tracker.trial_runs()
    written = []
    for row in finished:
        if only is not None and row.number not in only:
            continue
        run = runs.get(row.number)
        if (run is not None and run.info.status != "RUNNING"
                and run.data.tags.get("tuner.status") == row.status):
            continue
        tracker.record_trial(row, run)
        written.append(row.number)
    for run_id in tracker.strays:  # a run whose creation answered too late to be known
        tracker.close_run(run_id, "FAILED", {"tuner.status": "superseded",
                                             "tuner.reason": "a later run holds this trial"})
    return written
