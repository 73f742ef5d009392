"""The CPU runtime knobs, seen from inside the trial process: threads, the affinity mask, the
preloaded allocator and OpenMP runtime; disjoint cores for trials side by side; `tuner doctor`."""

from __future__ import annotations

import threading
import time

import pytest
from trial_processes import run, trial_config

from tuner import runtime_libs
from tuner.driver.cli import main
from tuner.trial import OK, UNSUPPORTED, TrialResult


def _run(workload: str = "tiny_cnn", cpus: int = 1, exclusive: bool = False,
         **knobs: object) -> TrialResult:
    return run(trial_config(workload, guard=False, timed_steps=3, cpus=cpus,
                            exclusive_cores=exclusive, **knobs))


def test_threads_reach_the_child() -> None:
    result = _run(threads=1, interop_threads=1)
    assert result.status == OK, result.reason
    assert result.info["torch_threads"] == 1 and result.info["interop_threads"] == 1
    assert result.info["omp_env"]["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize(("knob", "choice", "library"), [
    ("allocator", "jemalloc", "jemalloc"), ("allocator", "tcmalloc", "tcmalloc"),
    ("omp_runtime", "iomp", "iomp")])
def test_preloaded_library_is_mapped_in_the_child_or_skipped_with_its_fix(
        knob: str, choice: str, library: str) -> None:
    result = _run(**{knob: choice})
    path = runtime_libs.find(library)
    if path is None:  # this machine lacks it: skipped cheaply, saying how to get it
        assert result.status == UNSUPPORTED
        assert result.reason == runtime_libs.missing_reason(library)
        assert "install" in result.reason
        return
    assert result.status == OK, result.reason
    assert str(path.resolve()) in result.info["preloaded"]  # mapped: read from /proc/self/maps
    assert str(path) in result.info["env_set"]["LD_PRELOAD"]  # set explicitly, and recorded
    if choice == "jemalloc":
        assert result.info["env_set"]["MALLOC_CONF"] == runtime_libs.JEMALLOC_CONF


def test_allocator_and_openmp_preloads_are_joined() -> None:
    if runtime_libs.find("jemalloc") is None or runtime_libs.find("iomp") is None:
        pytest.skip("needs jemalloc and intel-openmp (installed by .ci/run)")
    result = _run(allocator="jemalloc", omp_runtime="iomp")
    assert result.status == OK, result.reason
    assert result.info["env_set"]["LD_PRELOAD"].count(":") == 1
    assert {str(runtime_libs.find(name).resolve()) for name in ("jemalloc", "iomp")} <= set(
        result.info["preloaded"])


@pytest.mark.slow
def test_affinity_cores_pins_the_child() -> None:
    result = _run(affinity="cores", cpus=1)
    assert result.status == OK, result.reason
    assert len(result.info["affinity"]) == 1
    assert result.info["affinity"] == result.info["pinned_cores"]
    assert result.info["env_set"]["OMP_PROC_BIND"] == "close"
    unpinned = _run(affinity="none")
    assert len(unpinned.info["affinity"]) >= 1 and unpinned.info["pinned_cores"] == []


@pytest.mark.parametrize("omp_runtime", ["gomp", "iomp"])
def test_pinned_trial_runs_one_thread_per_core_with_either_openmp_runtime(
        omp_runtime: str) -> None:
    """Pinning must not shrink torch's threads: torch's libgomp, loaded even when libiomp5 is
    preloaded, binds the main thread at load time if it sees OMP_PROC_BIND, and libiomp5 then
    saw one core and ran torch on one thread (ResNet-50 at 0.5-0.7x)."""
    if omp_runtime == "iomp" and runtime_libs.find("iomp") is None:
        pytest.skip("needs intel-openmp (installed by .ci/run)")
    cores = len(__import__("os").sched_getaffinity(0))
    result = _run(affinity="cores", omp_runtime=omp_runtime, cpus=cores, threads="default")
    assert result.status == OK, result.reason
    assert len(result.info["pinned_cores"]) == cores
    assert result.info["torch_threads"] == cores
    binding = "KMP_AFFINITY" if omp_runtime == "iomp" else "OMP_PROC_BIND"
    assert binding in result.info["env_set"]


def test_two_trials_side_by_side_get_disjoint_cores() -> None:
    results: list[TrialResult] = []
    spans: list[tuple[float, float]] = []

    def one() -> None:
        started = time.monotonic()
        results.append(_run("faulty_workloads:slow", cpus=1, exclusive=True))
        spans.append((started, time.monotonic()))

    workers = [threading.Thread(target=one) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(r.status == OK for r in results), [r.reason for r in results]
    first, second = (set(r.info["affinity"]) for r in results)
    assert first and second and not first & second  # never a shared core
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1  # they really ran at the same time


def test_doctor_says_what_this_machine_can_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for words in ("cpu:", "isa: ", "AVX512-BF16", "memory:", "torch:", "IPEX:",
                  "libraries a trial can preload:", "jemalloc:", "tcmalloc:", "iomp:",
                  "versions: ", "knob choices on this machine:", "allocator: default"):
        assert words in out, words


@pytest.mark.parametrize("knobs", [{"ipex": "optimize"}, {"ipex": "optimize", "dtype": "bf16"},
                                   {"compile": "ipex"}], ids=["optimize", "optimize-bf16",
                                                              "compile-ipex"])
def test_ipex_is_optional_and_says_why_it_cannot_run(knobs: dict[str, str]) -> None:
    """Where a matching IPEX is installed (benchmarks/ipex_env.sh makes such an environment)
    it really runs; elsewhere the choice is skipped saying why."""
    from tuner.knobs.ipex import ipex_problem

    result = _run(**knobs)
    problem = ipex_problem()
    if problem is None:
        assert result.status == OK, result.reason
        if "ipex" in knobs:
            assert "intel_extension_for_pytorch" in result.info["versions"]
        return
    assert result.status == UNSUPPORTED
    choice = "ipex=optimize" if "ipex" in knobs else "compile=ipex"
    assert result.reason == f"{choice}: {problem}"
    assert "torch 2.8" in result.reason


MISSING_LIBRARY_SPACE = """
study: missing_library
workload: {name: tiny_cnn, options: {image_size: 8}}
knobs:
  batch_size: [16]
  threads: [1]
  ipex: [none, optimize]
  compile: [none, ipex]
baseline: {batch_size: 16, threads: 1, ipex: none, compile: none}
try_first: [{ipex: optimize}, {compile: ipex}, {ipex: optimize, compile: ipex}]
budget: {trials: 4, timeout_s: 300}
measure: {warmup_steps: 1, timed_steps: 2, min_timed_steps: 2, max_cv: 0.9}
guard: {steps: 1, batch_size: 4}
sampler: {name: random, seed: 0}
"""


@pytest.mark.slow
def test_missing_library_reason_reaches_progress_table_and_mlflow(ray_local, workdir,
                                                                  capsys) -> None:
    """A choice this machine cannot honour (IPEX, unless a matching one is installed) is skipped
    before any work, and its reason is in the progress line, the final table and MLflow."""
    from mlflow.tracking import MlflowClient

    from tuner.knobs.ipex import ipex_problem

    problem = ipex_problem()
    if problem is None:
        pytest.skip("a matching IPEX is installed here: nothing is missing")
    space = workdir.parent / "missing.yaml"
    space.write_text(MISSING_LIBRARY_SPACE, encoding="utf-8")
    assert main(["search", "--space", str(space)]) == 0
    out = capsys.readouterr().out
    progress, table = out.split("failures by reason:")
    for choice in ("ipex=optimize", "compile=ipex"):
        assert f"{choice}: {problem}" in progress, choice
        assert f"unsupported: {choice}: {problem}" in table, choice
    assert "skipped, not started" in progress  # the third learned from the first two
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("missing_library")
    reasons = sorted(r.data.tags["tuner.reason"] for r in client.search_runs(
        [experiment.experiment_id]) if r.data.tags.get("tuner.kind") == "trial"
        and r.data.tags["tuner.status"] == UNSUPPORTED)
    # none of them counts against the budget: the search went on until the space (one
    # runnable config) was spent
    assert len(reasons) >= 3 and all(problem in reason for reason in reasons), reasons
    assert "the space looks exhausted" in out


@pytest.mark.slow
def test_numa_local_binds_the_child_or_says_why_not() -> None:
    import shutil

    result = _run(numa="local")
    if shutil.which("numactl") is None:
        assert result.status == UNSUPPORTED and "apt-get install numactl" in result.reason
        return
    assert result.status == OK, result.reason
    placement = result.info["placement"]
    if "memory binding refused" in placement:  # a container: CPU binding only, said plainly
        assert result.info["memory_policy"] == "default"
    else:
        assert placement.startswith("CPUs and memory bound to NUMA node ")
        node = placement.rsplit(" ", 1)[-1]
        assert result.info["memory_policy"] == f"bind:{node}"  # seen from inside the child
    assert _run(numa="none").info["memory_policy"] == "default"
