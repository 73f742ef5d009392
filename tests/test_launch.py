"""`tuner launch` and `tuner export`: the user's own command starts as the best config's trial
process did (preloads, OMP/KMP variables, threads, cores, numactl), on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuner import runtime_libs

# a job that reports what it started with
REPORT = ("import json, os; print(json.dumps({'env': dict(os.environ), "
          "'cores': sorted(os.sched_getaffinity(0))}))")


def _best(folder: Path, knobs: dict[str, object]) -> Path:
    """A best-config file as `tuner search` writes it."""
    path = folder / "best.yaml"
    path.write_text(yaml.safe_dump({"study": "mine", "trial": 7, "objective": "samples_per_sec",
                                    "samples_per_sec": 12.2, "speedup_over_baseline": 4.76,
                                    "knobs": knobs}), encoding="utf-8")
    return path


def _tuner(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner.driver.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})}, check=False)


def test_launch_starts_the_command_as_the_trial_started(tmp_path: Path) -> None:
    allocator = "tcmalloc" if runtime_libs.find("tcmalloc") else "default"
    config = _best(tmp_path, {"batch_size": 64, "dtype": "bf16", "memory_format": "channels_last",
                              "threads": 1, "affinity": "cores", "allocator": allocator})
    done = _tuner("launch", str(config), "--", sys.executable, "-c", REPORT,
                  env={"OMP_NUM_THREADS": "7", "KMP_BLOCKTIME": "200", "MY_OWN": "kept"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    env = seen["env"]
    assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"  # the config's
    assert env["OMP_PROC_BIND"] == "close" and env["OMP_PLACES"] == "cores"
    assert "KMP_BLOCKTIME" not in env  # inherited, and the measured trial did not have it
    assert env["MY_OWN"] == "kept"  # the user's own environment otherwise stays
    assert env["TUNER_CONFIG"] == str(config.resolve())
    assert seen["cores"] == [min(os.sched_getaffinity(0))]  # one thread: pinned to one core
    if allocator == "tcmalloc":
        assert "tcmalloc" in env["LD_PRELOAD"]
    line = done.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("tuner launch: ")
    assert "unset KMP_BLOCKTIME" in line and "pinned to cores" in line
    assert "inside the job (its own code applies these): batch_size=64 dtype=bf16 " \
           "memory_format=channels_last threads=1" in line


def test_launch_passes_the_commands_exit_code(tmp_path: Path) -> None:
    config = _best(tmp_path, {"batch_size": 32})
    done = _tuner("launch", str(config), "--", sys.executable, "-c", "raise SystemExit(5)")
    assert done.returncode == 5


@pytest.mark.parametrize(("content", "args", "expected"), [
    (None, ["--", "true"], "cannot read it"),
    ("knobs: [1, 2", ["--", "true"], "not YAML"),
    ("study: x\n", ["--", "true"], "knobs: missing"),
    ("knobs: {batch_sise: 32}\n", ["--", "true"], "knobs.'batch_sise': unknown knob"),
    ("knobs: {dtype: fp64}\n", ["--", "true"], "knobs.dtype: did you mean fp16? must be one of"),
    ("knobs: {batch_size: 32}\n", [], "launch: give the command to run after --"),
    ("knobs: {batch_size: 32}\n", ["--", "/nonexistent/cmd"], "launch: cannot run"),
])
def test_bad_launches_are_one_line(tmp_path: Path, content: str | None, args: list[str],
                                   expected: str) -> None:
    config = tmp_path / "best.yaml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    done = _tuner("launch", str(config), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_export_prints_the_settings_for_other_launchers(tmp_path: Path) -> None:
    config = _best(tmp_path, {"batch_size": 64, "threads": 2, "affinity": "cores",
                              "omp_runtime": "gomp", "allocator": "default"})
    env = _tuner("export", str(config), "--to", "env", env={"OMP_NUM_THREADS": "9"})
    assert env.returncode == 0, env.stderr
    lines = env.stdout.splitlines()
    assert "OMP_NUM_THREADS=2" in lines and "OMP_PROC_BIND=close" in lines
    shell = _tuner("export", str(config), env={"KMP_AFFINITY": "x"})
    assert "export OMP_PLACES=cores" in shell.stdout and "unset KMP_AFFINITY" in shell.stdout
    assert "# pin the job to cores" in shell.stdout
    assert "# inside the job (its own code applies these): batch_size=64 threads=2" \
        in shell.stdout
    run_cpu = _tuner("export", str(config), "--to", "run_cpu")
    first = run_cpu.stdout.splitlines()[0]
    assert first.startswith("python -m torch.backends.xeon.run_cpu --ninstances 1 "
                            "--use-default-allocator --disable-iomp --ncores-per-instance 2 "
                            "--disable-numactl")
    assert "--disable-taskset" not in first  # affinity=cores: run_cpu pins
    assert "set OMP_PROC_BIND=close OMP_PLACES=cores yourself" in run_cpu.stdout


def test_the_run_cpu_options_exist_in_this_torch() -> None:
    """Each option `--to run_cpu` prints is one torch's run_cpu accepts."""
    from tuner.node.launch import ProcessHalf, run_cpu_command

    half = ProcessHalf({"allocator": "jemalloc", "threads": 2, "numa": "none",
                        "affinity": "none"}, {}, [], None)
    command, _ = run_cpu_command(half)
    helped = subprocess.run([sys.executable, "-m", "torch.backends.xeon.run_cpu", "--help"],
                            capture_output=True, text=True, timeout=120, check=False).stdout
    for option in (part for part in command if part.startswith("--")):
        assert option in helped, option


def test_the_in_process_half_lists_knobs_at_their_default_too() -> None:
    """A best config of batch 32 in fp32 was measured at batch 32 in fp32: both are said."""
    from tuner.knobs import REGISTRY
    from tuner.node.launch import process_half

    knobs = {"batch_size": REGISTRY["batch_size"].default, "dtype": "fp32", "threads": 1,
             "allocator": "default"}
    inside = process_half(knobs, {}).in_process()
    assert inside == {"batch_size": REGISTRY["batch_size"].default, "dtype": "fp32",
                      "threads": 1}
