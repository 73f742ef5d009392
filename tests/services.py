"""Real servers for the tests, each on loopback in a folder of its own: a throwaway PostgreSQL
(Debian's binaries), an `mlflow server`, and a Ray cluster of separate `ray start` nodes.

Nothing here is a fake: each is the program a team runs, started the way docs/cluster.md says,
and stopped (its processes killed, its files removed) by the test that started it.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

POSTGRES_URL_VAR = "TUNER_TEST_POSTGRES"  # use this server instead of starting one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check: object, what: str, process: subprocess.Popen[bytes] | None, log: Path,
          timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start:\n{tail}")
        time.sleep(0.5)


# -- PostgreSQL --------------------------------------------------------------------------------

def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (initdb, pg_ctl), newest version."""
    on_path = shutil.which("pg_ctl")
    if on_path and Path(on_path).with_name("initdb").exists():
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda path: (int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit()
                                     else 0))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A PostgreSQL server of its own: initdb in a temporary folder, password authentication
    (scram) for user `tuner`, listening on 127.0.0.1 only. As root it runs as the `postgres`
    system user (the server refuses to run as root)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.password = secrets.token_hex(12)
        self.port = free_port()
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tuner-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.bin = postgres_bin()
        self.url = f"postgresql://tuner:{self.password}@127.0.0.1:{self.port}/postgres"

    def _as_server_user(self) -> object:
        if os.getuid() != 0:
            return None
        user = pwd.getpwnam("postgres")

        def switch() -> None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        shutil.chown(self.folder, user.pw_uid, user.pw_gid)
        return switch

    def _run(self, *command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=120,
                       preexec_fn=self._as_server_user())

    def start(self) -> None:
        assert self.bin is not None, "no PostgreSQL server binaries (apt-get install postgresql)"
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "tuner", "--no-sync",
                  "-A", "scram-sha-256", f"--pwfile={password_file}")
        password_file.unlink()
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                  "start")

    def pause(self) -> None:
        """Stop the server, keeping its data and port (a restart, a failover)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                  "start")

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "stop"], check=False, capture_output=True, timeout=60,
                           preexec_fn=self._as_server_user())
        shutil.rmtree(self.folder, ignore_errors=True)


# -- MLflow ------------------------------------------------------------------------------------

_MLFLOW_TEMPLATE: list[Path] = []


def empty_mlflow_db(path: Path) -> Path:
    """An empty MLflow tracking database at `path`, at this MLflow's newest schema, copied
    from one made once per test process: a fresh one runs MLflow's ~50 schema migrations
    (about 3 s) each time, and most tests are about what comes after. The tests that give no
    copy (subprocess searches, `--workdir` elsewhere) still see a search create its own."""
    if not _MLFLOW_TEMPLATE:
        from mlflow.tracking import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="tuner-tests-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, True)
        MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        _MLFLOW_TEMPLATE.append(folder / "mlflow.db")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MLFLOW_TEMPLATE[0], path)
    return path


class MlflowServer:
    """`mlflow server` with a SQLite backend and served artifacts, on loopback only; on a fixed
    port across a stop and a start (an outage, then the server back)."""

    def __init__(self, folder: Path, backend_store_uri: str | None = None) -> None:
        self.folder = folder
        if backend_store_uri is None:  # its own database, made ahead (no migrations at start)
            backend_store_uri = f"sqlite:///{empty_mlflow_db(folder / 'server.db')}"
        self.backend_store_uri = backend_store_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "mlflow-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", "1", "--backend-store-uri", self.backend_store_uri,
                 "--artifacts-destination", str(self.folder / "server-artifacts")],
                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait()

    def wait(self) -> None:
        """Until the server answers its health check."""
        _wait(self._healthy, "mlflow server", self.process, self.log)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None


# -- Ray ---------------------------------------------------------------------------------------

def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat[0] != "Z":
            found[int(entry.name)] = (int(stat[1]), args)
    return found


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    """`root` and every process under it, parents before children."""
    order, frontier = [root], [root]
    while frontier:
        children = [pid for pid, (parent, _) in table.items() if parent in frontier]
        order += children
        frontier = children
    return order


class RayCluster:
    """Ray nodes started with `ray start` as separate processes on this machine, each with its
    own resource declaration (a custom resource names it), token authentication on (a token of
    this cluster's own), bound to 127.0.0.1, in a temporary folder of their own so stopping them
    never touches another Ray on the machine."""

    def __init__(self, folder: Path, node_env: dict[str, str] | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="trc-", dir="/tmp")  # short: socket paths
        self.token = Path(folder, "ray-token")
        self.token.write_text(secrets.token_hex(32), encoding="utf-8")
        self.token.chmod(0o600)
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token)}
        base = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        self.node_env = {**base, **(node_env or {}), **self.auth_env,
                         # a lost node is marked dead in seconds, not Ray's default 12-60 s
                         # (benchmarks/node_loss.py)
                         "RAY_health_check_period_ms": "1000",
                         "RAY_health_check_timeout_ms": "1000",
                         "RAY_health_check_failure_threshold": "3"}
        self.port = free_port()
        self.client_port = free_port()  # not Ray's default 10001: another Ray may hold it
        self.address = f"127.0.0.1:{self.port}"
        self.log = Path(folder, "ray-start.log")

    def _ray_start(self, *args: str) -> None:
        with open(self.log, "ab") as log:
            subprocess.run(["ray", "start", "--node-ip-address", "127.0.0.1", "--temp-dir",
                            self.temp_dir, "--disable-usage-stats", *args],
                           env=self.node_env, stdout=log, stderr=subprocess.STDOUT, check=True,
                           timeout=180)

    def start_head(self, name: str, cpus: int) -> None:
        self._ray_start("--head", "--port", str(self.port), "--num-cpus", str(cpus),
                        "--resources", f'{{"{name}": 1}}', "--include-dashboard", "false",
                        "--ray-client-server-port", str(self.client_port))

    def add_node(self, name: str, cpus: int) -> None:
        self._ray_start("--address", self.address, "--num-cpus", str(cpus),
                        "--resources", f'{{"{name}": 1}}')

    def raylet(self, name: str) -> int | None:
        """The pid of the raylet of the node declaring resource `name`."""
        for pid, (_, args) in _processes().items():
            if "raylet/raylet" in args and self.temp_dir in args and f"{name}" in args:
                return pid
        return None

    def runs_under(self, name: str, pid: int) -> bool:
        """Whether process `pid` runs on node `name` (a descendant of its raylet)."""
        raylet = self.raylet(name)
        return raylet is not None and pid in _descendants(raylet, _processes())

    def kill_node(self, name: str, how: int = signal.SIGKILL) -> list[int]:
        """The node is lost, as a machine that dies: its raylet and everything under it (Ray
        workers, trial processes) SIGKILLed at once, parents first (SIGSTOP: a machine that
        hangs, its connections left open)."""
        raylet = self.raylet(name)
        assert raylet is not None, f"no node {name} running"
        killed = _descendants(raylet, _processes())
        for pid in killed:
            try:
                os.kill(pid, how)
            except ProcessLookupError:
                pass
        return killed

    def stop(self) -> None:
        """Every process of this cluster (found by its folder or, for the head's Ray Client
        server, its port; with the workers and trials under them: a Ray worker's command line
        is its task's name), then the folder."""
        table = _processes()
        ours = [pid for pid, (_, args) in table.items() if self.temp_dir in args
                or ("ray.util.client.server" in args and f"--port={self.client_port}" in args)]
        for pid in {child for root in ours for child in _descendants(root, table)}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    """`python tests/services.py postgres start|stop FOLDER`: .ci/run's PostgreSQL for the
    whole test run (started prints its URL; the tests find it in TUNER_TEST_POSTGRES)."""
    if len(argv) != 3 or argv[0] != "postgres" or argv[1] not in ("start", "stop"):
        print("usage: services.py postgres start|stop FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[2])
    server = Postgres(folder)
    if argv[1] == "stop":
        server.stop()
        return 0
    if postgres_bin() is None:
        print("no PostgreSQL server binaries (apt-get install postgresql)", file=sys.stderr)
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    server.start()
    print(server.url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
