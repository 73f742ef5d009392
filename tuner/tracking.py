"""MLflow records: one parent run per search, one nested run per trial.

Only the driver writes here. Names are stable across trials (knob names as params, metric
names with units) so the MLflow UI's run comparison lines trials up directly.
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

from tuner.trial import TrialResult


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

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # after import: mlflow sets its own levels then
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        existing = self.client.get_experiment_by_name(experiment)
        if existing is not None:
            self.experiment_id = existing.experiment_id
        else:
            location = (artifact_root / experiment).resolve().as_uri() if artifact_root else None
            self.experiment_id = self.client.create_experiment(experiment,
                                                               artifact_location=location)
        self.parent_run_id: str | None = None

    def start_search(self, study: str, space_source: str, tags: dict[str, str]) -> str:
        run_tags = {
            "tuner.study": study, "tuner.space": space_source, "tuner.kind": "search",
            **{f"host.{key}": value for key, value in host_fingerprint().items()},
            **{f"version.{key}": value for key, value in library_versions().items()},
            **tags,
        }
        run = self.client.create_run(self.experiment_id, tags=run_tags,
                                     run_name=f"search-{time.strftime('%Y%m%d-%H%M%S')}")
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def start_trial(self, trial_number: int, knobs: dict[str, Any], tags: dict[str, str]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{trial_number:03d}",
            tags={"mlflow.parentRunId": self.parent_run_id or "", "tuner.trial": str(trial_number),
                  "tuner.kind": "trial", **tags},
        )
        params = [Param(name, str(value)) for name, value in sorted(knobs.items())]
        self.client.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    def finish_trial(self, run_id: str, result: TrialResult, metrics: dict[str, float],
                     tags: dict[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        now = _now_ms()
        batch = [Metric(name, float(value), now, 0) for name, value in sorted(metrics.items())
                 if value is not None]
        batch += [Metric("step_time_s", float(t), now, index)
                  for index, t in enumerate(result.step_times_s)]
        batch += [Metric("guard_loss_curve", float(loss), now, index)
                  for index, loss in enumerate(result.guard_losses)]
        versions = result.info.get("versions", {})
        run_tags = {
            "tuner.status": result.status,
            "tuner.reason": result.reason[:4000],
            "tuner.note": str(result.info.get("note", "")),
            "tuner.node_id": str(result.info.get("node_id", "")),
            "tuner.hostname": str(result.info.get("hostname", "")),
            "tuner.env_set": " ".join(f"{k}={v}" for k, v in
                                      sorted(result.info.get("env_set", {}).items())),
            **{f"version.{name}": str(value) for name, value in versions.items()},
            **tags,
        }
        self.client.log_batch(run_id, metrics=batch,
                              tags=[RunTag(key, value) for key, value in run_tags.items()])
        status = "FINISHED" if result.ok else "FAILED"
        self.client.set_terminated(run_id, status=status)

    def finish_search(self, metrics: dict[str, float], tags: dict[str, str],
                      texts: dict[str, str], files: list[Path], failed: bool = False) -> None:
        from mlflow.entities import Metric, RunTag

        if self.parent_run_id is None:
            return
        now = _now_ms()
        self.client.log_batch(
            self.parent_run_id,
            metrics=[Metric(name, float(value), now, 0) for name, value in metrics.items()],
            tags=[RunTag(key, value) for key, value in tags.items()],
        )
        for artifact_file, text in texts.items():
            self.client.log_text(self.parent_run_id, text, artifact_file)
        for path in files:
            self.client.log_artifact(self.parent_run_id, str(path))
        self.client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")
