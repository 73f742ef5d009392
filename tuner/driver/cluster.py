"""Connecting the driver to a Ray cluster, and checking the cluster can run trials, before any
trial is asked for.

A cluster problem found here is one line and exit code 2, in seconds: nothing answers at the
address; the cluster wants Ray's token authentication and this shell has none (ray.init would
retry for 20 s, then say only "Failed to connect"); a worker node cannot import the tuner (the
first trial on it would fail, and every later one); a `--runtime-env` that is not a mapping or
that Ray cannot set up.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import UserError, show

AUTH_MODE_VAR = "RAY_AUTH_MODE"
NODE_CHECK_TIMEOUT_S = 300.0  # a runtime_env with pip packages installs them on each node first
AUTH_HINT = ("the Ray cluster uses token authentication: export RAY_AUTH_MODE=token and the "
             "cluster's token as RAY_AUTH_TOKEN (or in ~/.ray/auth_token, or a file named by "
             "RAY_AUTH_TOKEN_PATH); `ray get-auth-token` on the head prints it")


def check_address(address: str) -> None:
    """Fail in seconds on a HOST:PORT nobody listens at, or a cluster whose token this shell
    lacks (ray.init would retry for a long time before saying neither)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise UserError(f"--ray-address: nothing answers at {address} ({error.strerror or error}); "
                        "start the head with `ray start --head`, or leave the flag out for a "
                        "local Ray") from None
    if os.environ.get(AUTH_MODE_VAR, "").lower() != "token" and _wants_token(address):
        raise UserError(f"--ray-address: {address}: {AUTH_HINT}")


def _wants_token(address: str) -> bool:
    """Whether the GCS at `address` refuses a caller without a token. One RPC through Ray's own
    generated stubs; any other answer (or stubs that moved) is left for ray.init to report."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

        with grpc.insecure_channel(address) as channel:
            stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
            request = gcs_service_pb2.GetClusterIdRequest()  # type: ignore[attr-defined]
            stub.GetClusterId(request, timeout=5)
    except ImportError:
        return False
    except Exception as error:  # noqa: BLE001 - grpc.RpcError, or anything else: not ours to judge
        code = getattr(error, "code", None)
        return callable(code) and getattr(code(), "name", "") == "UNAUTHENTICATED"
    return False


def connect_error(address: str | None, error: Exception) -> UserError:
    first = (str(error).strip().splitlines() or [""])[0][:200]
    if address is None:
        return UserError(f"cannot start a local Ray: {first}")
    hint = ("; if the cluster uses token authentication, check RAY_AUTH_TOKEN or the token file"
            if os.environ.get(AUTH_MODE_VAR, "").lower() == "token" else "")
    return UserError(f"--ray-address: cannot connect to Ray at {address!r}: {first} (start one "
                     f"with `ray start --head`, or leave the flag out for a local Ray{hint})")


def load_runtime_env(value: str | None) -> dict[str, Any] | None:
    """`--runtime-env`: inline JSON, or a YAML/JSON file; Ray's runtime_env for every trial
    (working_dir, py_modules, pip, env_vars ...), how worker nodes get the workload's code."""
    if not value:
        return None
    text = value
    shown = value if value.isprintable() and len(value) <= 200 else show(value)
    if not value.lstrip().startswith("{"):
        path = Path(value)
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
        except (OSError, UnicodeDecodeError) as error:  # a name too long, unreadable
            raise UserError(f"--runtime-env: cannot read {shown}: "
                            f"{getattr(error, 'strerror', None) or error}") from None
        if not path.is_file():
            raise UserError(f"--runtime-env: no such file {shown}; give a YAML/JSON file "
                            'or inline JSON such as \'{"working_dir": "."}\'')
    try:
        env = yaml.safe_load(text) if not value.lstrip().startswith("{") else json.loads(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        first = (str(error).strip().splitlines() or [""])[0][:160] or "nested too deeply"
        raise UserError(f"--runtime-env: cannot parse {shown}: {first}") from None
    if not isinstance(env, dict) or not env:
        raise UserError("--runtime-env: expected a mapping of Ray runtime_env fields, e.g. "
                        '{"working_dir": ".", "pip": ["my-package"]}')
    return env


@dataclass(frozen=True)
class NodeReport:
    """What one alive node's trial supervisor sees: it can import the tuner, and which one."""

    node_id: str
    address: str
    tuner_version: str
    python: str


def _node_report() -> dict[str, str]:
    """Runs on a node, in a Ray worker with the search's runtime_env."""
    import platform
    from importlib import metadata

    import ray

    try:
        version = metadata.version("tuner")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed, found on the path)"
    return {"node_id": ray.get_runtime_context().get_node_id(), "tuner_version": version,
            "python": platform.python_version()}


def check_nodes(ray: Any, nodes: list[dict[str, Any]]) -> list[NodeReport]:
    """One zero-CPU task pinned to each alive node: a node that cannot import the tuner, or
    whose runtime_env fails, is refused now rather than failing every trial sent to it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(_node_report)
    refs = {node["NodeID"]: probe.options(
        num_cpus=0, max_retries=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in nodes}
    where = {node["NodeID"]: node.get("NodeManagerAddress", "?") for node in nodes}
    _, pending = ray.wait(list(refs.values()), num_returns=len(refs),
                          timeout=NODE_CHECK_TIMEOUT_S)
    reports = []
    for node_id, ref in refs.items():
        if ref in pending:
            raise UserError(f"--ray-address: node {where[node_id]} ({node_id[:12]}) did not run a "
                            f"check task in {NODE_CHECK_TIMEOUT_S:g} s: is it overloaded, or is "
                            "its runtime_env still installing?")
        try:
            report = ray.get(ref)
        except Exception as error:  # noqa: BLE001 - any failure names the node and the fix
            first = next((line for line in reversed(str(error).strip().splitlines())
                          if line.strip()), "")[:200]
            if "RuntimeEnvSetupError" in type(error).__name__:
                raise UserError(f"--runtime-env: Ray could not set it up on node "
                                f"{where[node_id]}: {first}") from None
            raise UserError(
                f"--ray-address: node {where[node_id]} ({node_id[:12]}) cannot run the tuner "
                f"({type(error).__name__}: {first}); install it there in the same environment "
                "as the driver's, or ship it with --runtime-env (see docs/cluster.md)") from None
        reports.append(NodeReport(node_id=report["node_id"], address=where[node_id],
                                  tuner_version=report["tuner_version"],
                                  python=report["python"]))
    return reports
