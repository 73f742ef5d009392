"""Cluster mode, for real on one machine: two Ray nodes started with `ray start` as separate
processes (each declaring its own resources, token authentication on), a PostgreSQL server as
the Optuna storage and an `mlflow server` as the tracking server, all on loopback; `tuner
search` runs against them exactly as a team runs it against theirs.

The workload of the first search is the user workload in examples/, which the nodes cannot
import: it reaches them through `--runtime-env` (Ray's working_dir). The second search loses
its worker node mid-trial (the node's processes SIGKILLed, as a machine that dies): that trial
is recorded as lost and runs again on the node left; nothing else is lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import ROOT
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from services import POSTGRES_URL_VAR, MlflowServer, Postgres, RayCluster, postgres_bin
from sqlalchemy.engine import make_url

from tuner.driver.stores import redact

pytestmark = pytest.mark.slow  # whole searches: minutes (the fast tier: -m "not slow")

HEAD, WORKER = "tuner_head", "tuner_worker"  # each node's own custom resource

TEAM_SPACE = """
study: team
workload: {name: "my_workload:make", options: {features: 16, hidden: 32}}
knobs: {batch_size: [32, 64, 128, 256, 512], threads: [1]}
baseline: {batch_size: 32, threads: 1}
budget: {trials: 5}
measure: {warmup_steps: 1, timed_steps: 3, min_timed_steps: 3, max_cv: 1.0}
trial: {time_limit_s: 120, heartbeat_s: 2, max_concurrent: 2}
guard: {steps: 1, batch_size: 16}
sampler: {name: random, seed: 1}
"""

LOSSY_SPACE = """
study: lossy
workload: {name: tiny_cnn, options: {image_size: 16}}
knobs: {batch_size: [8, 16, 32, 64, 128, 256], threads: [1]}
baseline: {batch_size: 8, threads: 1}
budget: {trials: 3}
measure: {warmup_steps: 1, timed_steps: 100000, min_timed_steps: 3, max_timed_s: 2.5,
          max_cv: 1.0}
trial: {time_limit_s: 120, heartbeat_s: 2, max_concurrent: 2}
guard: {steps: 1, batch_size: 8}
sampler: {name: random, seed: 1}
"""


class Team:
    """The services a team's search uses: Ray cluster, PostgreSQL, MLflow server."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.postgres: Postgres | None = None
        self.storage = os.environ.get(POSTGRES_URL_VAR, "")
        self.mlflow = MlflowServer(folder)
        # the nodes know the installed tuner and nothing of this checkout's tests or examples
        self.ray = RayCluster(folder, node_env={"PYTHONPATH": ""})

    def start(self) -> None:
        self.mlflow.start(wait=False)  # it starts while the others do
        if not self.storage:
            self.postgres = Postgres()
            self.postgres.start()
            self.storage = self.postgres.url
        self.ray.start_head(HEAD, cpus=1)
        self.ray.add_node(WORKER, cpus=1)
        self.mlflow.wait()

    def stop(self) -> None:
        self.ray.stop()
        self.mlflow.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def search(self, space: str, *extra: str, token: bool = True,
               password_in_env: bool = False) -> subprocess.Popen[str]:
        """`tuner search` against the team's services; `password_in_env`: the database
        password in PGPASSWORD, the URL without it (as docs/cluster.md recommends)."""
        (self.folder / "space.yaml").write_text(space, encoding="utf-8")
        # not the RAY_AUTH_MODE a local ray.init of this test session left in os.environ
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        env = {**env, **(self.ray.auth_env if token else {}),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), os.environ["PYTHONPATH"]])}
        storage = self.storage
        if password_in_env:
            url = make_url(self.storage)
            env["PGPASSWORD"] = url.password or ""
            storage = url.set(password=None).render_as_string(hide_password=False)
        return subprocess.Popen(
            [sys.executable, "-m", "tuner.driver.cli", "search", "--space", "space.yaml",
             "--ray-address", self.ray.address, "--storage", storage,
             "--tracking-uri", self.mlflow.url, *extra],
            cwd=self.folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)

    def trials(self, study: str) -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name=study, storage=self.storage).get_trials()

    def runs(self, study: str) -> list[object]:
        client = MlflowClient(tracking_uri=self.mlflow.url)
        return client.search_runs([client.get_experiment_by_name(study).experiment_id])


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    if not os.environ.get(POSTGRES_URL_VAR) and postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries here: apt-get install postgresql "
                    f"(.ci/run does), or give a server's URL in {POSTGRES_URL_VAR}")
    services = Team(tmp_path_factory.mktemp("team"))
    try:
        services.start()
        yield services
    finally:
        services.stop()


def _secrets(team: Team) -> list[str]:
    """The cluster's token and the database password: never to be printed or recorded."""
    found = [team.ray.token.read_text(encoding="utf-8").strip()]
    password = make_url(team.storage).password
    if password:
        found.append(password)
    return found


def test_a_shell_without_the_clusters_token_is_told_how_to_give_it(team: Team) -> None:
    search = team.search(TEAM_SPACE, token=False)
    out = search.communicate(timeout=120)[0]
    assert search.returncode == 2, out
    assert out.count("\n") == 1 and "Traceback" not in out, out
    assert "the Ray cluster uses token authentication: export RAY_AUTH_MODE=token" in out


def test_search_runs_on_both_nodes_and_records_every_trial(team: Team) -> None:
    search = team.search(TEAM_SPACE, "--runtime-env", '{"working_dir": "%s"}'
                         % (ROOT / "examples"))
    out = search.communicate(timeout=600)[0]
    assert search.returncode == 0, out
    assert "ray: 2 nodes, up to 1 CPUs per node; tuner " in out, out
    assert "up to 2 trial(s) at a time" in out

    trials = team.trials("team")
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials), out
    nodes = {t.user_attrs["info"]["node_id"] for t in trials}
    assert len(nodes) == 2 and "" not in nodes, out  # every trial says where it ran: both nodes

    runs = team.runs("team")
    parents = [r for r in runs if r.data.tags["tuner.kind"] == "search"]
    children = {int(r.data.tags["tuner.trial"]): r for r in runs
                if r.data.tags["tuner.kind"] == "trial"}
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == [t.number for t in trials]
    for trial in trials:
        run = children[trial.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags["tuner.node_id"] == trial.user_attrs["info"]["node_id"]
        assert run.data.params["batch_size"] == str(trial.user_attrs["knobs"]["batch_size"])
        assert run.data.metrics["samples_per_sec"] == pytest.approx(
            trial.user_attrs["metrics"]["samples_per_sec"])

    # no credential in what the search printed, or in any MLflow param or tag
    recorded = out + json.dumps([[r.data.params, r.data.tags] for r in runs])
    for secret in _secrets(team):
        assert secret not in recorded
    assert f"storage: {redact(team.storage)}" in out


def _running_trials(team: Team) -> dict[int, str]:
    """Trial number -> the node (HEAD or WORKER) of every live trial process."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = entry.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "tuner.worker" in args and "tuner-trial-" in args:
            number = int(args.split("tuner-trial-")[1].split("-")[0])
            for node in (HEAD, WORKER):
                if team.ray.runs_under(node, int(entry.parent.name)):
                    found[number] = node
    return found


def _sweep_trial_beside_another(team: Team, timeout_s: float = 240.0) -> tuple[int, list[int]]:
    """(a sweep trial running on the worker node, the trials running on the head beside it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = _running_trials(team)
        on_worker = [n for n, node in running.items() if node == WORKER and n > 0]
        beside = [n for n, node in running.items() if node == HEAD]
        if on_worker and beside:
            return on_worker[0], beside
        time.sleep(0.2)
    raise AssertionError(f"no trial ran on node {WORKER} beside one on {HEAD}")


LOSSES = {  # how the node is lost: what the search sees of it
    # its processes die (a killed raylet, a stopped Ray): Ray fails the task at once
    "killed": (signal.SIGKILL, "died or left the cluster (NodeDiedError)"),
    # it hangs or drops off the network: nothing closes, Ray's health check marks it dead but
    # never fails the task; the tuner notices the trial's node is dead
    "hung": (signal.SIGSTOP, "stopped answering and was marked dead"),
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_losing_a_node_fails_its_trial_and_runs_it_again_elsewhere(team: Team, loss: str) -> None:
    how, words = LOSSES[loss]
    if team.ray.raylet(WORKER) is None:  # lost by the test before
        team.ray.add_node(WORKER, cpus=1)
    study = f"lossy-{loss}"
    search = team.search(LOSSY_SPACE, "--study", study, password_in_env=True)
    try:
        lost, beside = _sweep_trial_beside_another(team)  # the baseline runs alone: not it
        time.sleep(1.0)  # into its build or measurement
        killed_at = time.time()
        assert team.ray.kill_node(WORKER, how)
        out = search.communicate(timeout=600)[0]
    finally:
        if search.poll() is None:
            search.kill()
        if team.ray.raylet(WORKER) is not None:
            team.ray.kill_node(WORKER)  # a hung node's processes: gone for good
    assert search.returncode == 0, out
    assert f"trial {lost} lost: its Ray node " in out, out
    assert words in out, out
    assert "re-queued: it runs again where the cluster has room" in out

    trials = {t.number: t for t in team.trials(study)}
    assert trials[lost].state == TrialState.FAIL
    assert trials[lost].user_attrs["status"] == "lost"
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == lost]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE, out
    assert retries[0].user_attrs["knobs"] == trials[lost].user_attrs["knobs"]
    # nothing else lost: the trial running beside it and every other trial completed, the
    # budget is met by measured trials
    assert all(trials[n].state == TrialState.COMPLETE for n in beside)
    others = [t for number, t in trials.items() if number != lost]
    assert all(t.state == TrialState.COMPLETE for t in others), out
    assert len(others) == 3
    # after the loss, trials ran on the node left (the retry among them)
    later = {t.user_attrs["info"]["node_id"] for t in others
             if t.user_attrs["info"]["started_at"] > killed_at}
    assert len(later) == 1 and retries[0].user_attrs["info"]["node_id"] in later

    runs = team.runs(study)
    children = {int(r.data.tags["tuner.trial"]): r for r in runs
                if r.data.tags["tuner.kind"] == "trial"}
    assert sorted(children) == sorted(trials)
    assert children[lost].info.status == "FAILED"
    assert children[lost].data.tags["tuner.status"] == "lost"
    assert children[retries[0].number].data.tags["tuner.retry_of"] == str(lost)
    assert [r.info.status for r in runs if r.data.tags["tuner.kind"] == "search"] == ["FINISHED"]
