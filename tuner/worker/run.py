"""Entry point of a trial process: `python -m tuner.worker CONFIG.json RESULT.json`.

A fresh process per trial, because threads, OMP variables, allocators, compile caches and
patches are process-wide. Whatever happens, it writes a TrialResult (or dies, and the executor
reports how): a trial's failure is data, never an exception that reaches the driver.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import metrics as mx
from tuner import progress as pg
from tuner.stats import percentile, too_noisy
from tuner.trial import FAILED, OK, OOM, PRUNED, UNSUPPORTED, TrialConfig, TrialInfo, TrialResult
from tuner.worker import headroom
from tuner.worker.rounds import Timed, measure_rounds

if TYPE_CHECKING:
    from tuner.worker.runner import Run

def _versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for package in ("torch", "torchvision", "intel_extension_for_pytorch", "intel-openmp"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def run_trial(config: TrialConfig, log: pg.ProgressLog | None = None) -> TrialResult:
    """Apply the knobs, time the workload, run the guard. Raises on trial errors. `log` gets
    each phase and timed step as it happens (a trial killed at its limit keeps them)."""
    from tuner.knobs import Host

    log = log or pg.ProgressLog(None)
    started = time.perf_counter()
    info = _process_info()
    host = Host.detect()
    info["worker_cpus"] = host.cpu_count
    refused = _unsupported_choice(config, host, info)
    if refused is not None:
        return refused
    setup = _apply_knobs(config, host, info)
    if config.workload.job:
        measured = _measure_job(config, setup, info, log, started)
        if isinstance(measured, TrialResult):
            return measured
        timed, build_s, batch_size, compiled = measured
        scenario, run, workload = config.workload.scenario, None, None
    else:
        built = _build(config, setup, info, log, started)
        if isinstance(built, TrialResult):
            return built
        workload, run, build_s = built
        if config.headroom:  # the first trial on its device: FLOPs and the matmul roof
            info["headroom"] = headroom.measure(workload, setup.device, run.scenario)
        timed = measure_rounds(config, setup, run, log, build_s)
        batch_size, compiled, scenario = setup.batch_size, run.compiled, run.scenario
    metrics = _metrics(config, setup, batch_size, compiled, scenario, timed, build_s)
    result = TrialResult(status=OK, metrics=metrics, step_times_s=timed.timing.step_times_s,
                         info=info)
    if timed.timing.pruned:  # no guard, no peak figures beyond this point: it stops here
        metrics["trial_process_s"] = time.perf_counter() - started
        result.status = PRUNED
        result.reason = (f"stopped after {sum(timed.timing.step_times_s):.1f} s of timed steps: "
                         f"{metrics['samples_per_sec']:,.0f} samples/s, below the search's cut "
                         f"of {config.stop_below:,.0f} (measure.prune_below x its best so far)")
        return result
    note = "; ".join(part for part in (info.get("note", ""), _note(config, timed)) if part)
    if note:
        info["note"] = note
    if config.guard.run:
        log.phase(pg.GUARD)
        if config.workload.job:
            _job_guard(result, config, setup, log)
        elif scenario == "infer":
            _quality_guard(result, workload, run, setup.batch_size)
        else:
            del run  # the guard builds its own model: this one's memory is not needed
            _loss_guard(result, workload, setup, config)
    from tuner.worker import measure

    metrics["peak_rss_mb"] = measure.peak_rss_mb()
    metrics["trial_process_s"] = time.perf_counter() - started
    return result


def _process_info() -> TrialInfo:
    return {"pid": os.getpid(), "versions": _versions(),
            # the process's cores, read before OpenMP binds its threads
            "affinity": sorted(os.sched_getaffinity(0)),
            # 0 unless the supervisor could not undo a niced Ray worker's
            "niceness": os.getpriority(os.PRIO_PROCESS, 0)}


def _unsupported_choice(config: TrialConfig, host: Any,
                        info: TrialInfo) -> TrialResult | None:
    """A choice this worker cannot run (no IPEX, no CUDA, no bf16): the trial ends here."""
    from tuner.knobs import REGISTRY

    for name, value in config.knobs.items():
        reason = REGISTRY[name].unsupported_reason(value, host, config.knobs)
        if reason:
            info["unsupported_choice"] = {name: value}  # the driver skips it from now on
            return TrialResult(status=UNSUPPORTED, reason=reason, info=info)
    return None


def _apply_knobs(config: TrialConfig, host: Any, info: TrialInfo) -> Any:
    """The knobs' setup and process settings, and what they came to in this process."""
    import torch

    from tuner import runtime_libs
    from tuner.knobs import REGISTRY, RunSetup
    from tuner.knobs.base import CPU_FEATURES
    from tuner.worker import measure

    setup = RunSetup(device="cpu")
    for name, value in config.knobs.items():
        REGISTRY[name].apply(value, setup)
    if setup.interop_threads is not None:  # before any inter-op work, or torch refuses
        torch.set_num_interop_threads(setup.interop_threads)
    if setup.intra_op_threads is not None:
        torch.set_num_threads(setup.intra_op_threads)
    info["torch_threads"] = torch.get_num_threads()
    info["interop_threads"] = torch.get_num_interop_threads()
    info["preloaded"] = runtime_libs.preloaded_in_this_process()
    info["memory_policy"] = _memory_policy()
    info["omp_env"] = {key: os.environ[key] for key in sorted(os.environ)
                       if key.startswith(("OMP_", "KMP_", "MKL_")) or key in ("LD_PRELOAD",
                                                                             "MALLOC_CONF")}
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["device"] = setup.device
    info["cpu_features"] = sorted(set(CPU_FEATURES) & host.cpu_flags)  # for the priors
    if setup.device == "cuda":
        info["gpu"] = f"{host.gpu_name} (compute capability {host.gpu_capability[0]}." \
                      f"{host.gpu_capability[1]}, {measure.gpu_total_mb():,.0f} MB)"
        info["gpu_capability"] = list(host.gpu_capability)
        info["versions"]["cuda"] = str(torch.version.cuda)
        info["versions"]["cudnn"] = str(torch.backends.cudnn.version())
    return setup


def _build(config: TrialConfig, setup: Any, info: TrialInfo, log: pg.ProgressLog,
           started: float) -> tuple[Any, Run, float] | TrialResult:
    """The workload and its run (model, optimizer, loader, compile wrapper): (workload, run,
    build seconds), or the result of a trial whose choice this workload cannot take."""
    import torch

    from tuner.knobs.base import UnsupportedChoice
    from tuner.worker import measure
    from tuner.worker.runner import InferRun, TrainRun
    from tuner.workloads import build_workload

    if config.cache_dir:
        os.environ["TUNER_CACHE_DIR"] = config.cache_dir  # e.g. trained weights, built once
    workload = build_workload(config.workload)
    scenario = getattr(workload, "scenario", "train")
    info["scenario"] = scenario
    refused = _inference_only(config, scenario, info)
    if refused is not None:
        return refused
    torch.manual_seed(config.seed)
    log.phase(pg.BUILDING, started_at=time.time() - (time.perf_counter() - started),
              batch_size=setup.batch_size, planned_steps=config.measure.timed_steps)
    build_started = time.perf_counter()
    run_class: type[Run] = InferRun if scenario == "infer" else TrainRun
    try:
        run = run_class(workload, setup, num_batches=measure.batches_needed(config.measure),
                        batch_size=setup.batch_size)
    except UnsupportedChoice as error:
        info["unsupported_choice"] = error.choice
        return TrialResult(status=UNSUPPORTED, reason=error.reason, info=info)
    return workload, run, time.perf_counter() - build_started


def _inference_only(config: TrialConfig, scenario: str, info: TrialInfo) -> TrialResult | None:
    """An inference-only choice (quantization, ONNX Runtime) in a training trial: unsupported."""
    from tuner.knobs import REGISTRY

    chosen = {name: value for name, value in config.knobs.items()
              if REGISTRY[name].inference_only and value != REGISTRY[name].default}
    if scenario == "infer" or not chosen:
        return None
    name, value = next(iter(chosen.items()))
    info["unsupported_choice"] = {name: value}
    return TrialResult(status=UNSUPPORTED, info=info, reason=(
        f"{name}={value}: applies to inference workloads; {config.workload.name} trains"))


def _measure_job(config: TrialConfig, setup: Any, info: TrialInfo, log: pg.ProgressLog,
                 started: float) -> tuple[Timed, float, int, bool] | TrialResult:
    """The user's own job, timed at its marked steps (`tuner.worker.user_job`)."""
    from tuner.worker import user_job

    info["scenario"] = config.workload.scenario
    refused = _inference_only(config, config.workload.scenario, info)
    if refused is not None:
        return refused
    if config.cache_dir:
        os.environ["TUNER_CACHE_DIR"] = config.cache_dir
    from tuner.knobs.base import UnsupportedChoice

    try:
        measured = user_job.measure_job(config, setup, log, started)
    except UnsupportedChoice as error:
        info["unsupported_choice"] = error.choice
        return TrialResult(status=UNSUPPORTED, reason=error.reason, info=info)
    if measured.batch_samples not in (None, setup.batch_size) and "batch_size" in config.knobs:
        info["note"] = (f"the job's batches hold {measured.batch_samples} samples, not the "
                        f"trial's batch_size={setup.batch_size}: build its loader with "
                        "tuned.loader(dataset, ...) for the knob to act")
    return (measured.timed, measured.build_s, measured.samples_per_step, measured.compiled)


def _job_guard(result: TrialResult, config: TrialConfig, setup: Any,
               log: pg.ProgressLog) -> None:
    """The job run again as the guard's fixed experiment: the mean of what it reported."""
    from tuner.worker import guard, user_job

    guard_started = time.perf_counter()
    figures = user_job.guard_job(config, setup, log)
    result.guard_losses = figures
    result.guard_loss = guard.guard_value(figures)
    if config.workload.scenario == "infer":
        result.metrics["quality"] = result.guard_loss
    result.metrics["guard_s"] = time.perf_counter() - guard_started


def _metrics(config: TrialConfig, setup: Any, batch_size: int, compiled: bool, scenario: str,
             timed: Timed, build_s: float) -> dict[str, float]:
    from tuner.worker import measure

    stats, first = timed.stats, timed.first
    first_warmup = first.warmup_times_s[0] if first.warmup_times_s else 0.0
    metrics = {
        mx.SAMPLES_PER_SEC: measure.samples_per_sec(batch_size, stats.median_s),
        mx.STEP_TIME_MEDIAN_S: stats.median_s,
        mx.STEP_TIME_IQR_S: stats.iqr_s,
        mx.STEP_TIME_CV: stats.cv,
        mx.TIMED_STEPS: float(stats.count),
        "warmup_s": sum(first.warmup_times_s),
        mx.MEASURE_ROUNDS: float(timed.rounds),
        "timed_s": timed.timed_s,  # every round's timed steps, the kept one and those again
        mx.MEDIAN_ERROR: stats.median_error,
        mx.NOISY: float(too_noisy(stats, config.measure.max_cv, config.measure.max_median_error)
                        or stats.count < config.measure.min_timed_steps),
        # compile happens in the first step; what it cost beyond a steady step is compile time
        mx.COMPILE_S: max(0.0, first_warmup - stats.median_s) if compiled else 0.0,
        "model_build_s": build_s,
        "peak_rss_mb": measure.peak_rss_mb(),
        **measure.gpu_peak_memory_mb(setup.device),  # build, warm-up and timed steps
    }
    if scenario == "infer":
        for percent in (50, 90, 99):  # latency per batch, after warm-up
            metrics[f"latency_p{percent}_ms"] = 1000 * percentile(
                timed.timing.step_times_s, percent)
    return metrics


def _note(config: TrialConfig, timed: Timed) -> str:
    """Why the kept round has fewer steps, or is noisy: for the user reading the trial."""
    settings, stats = config.measure, timed.stats
    if timed.left_noisy:
        return (f"noisy round (cv {stats.cv:.1%}) kept: no time for another round of "
                f"{settings.min_timed_steps} steps before the trial's time limit")
    if timed.timing.stopped_by_deadline:
        few = (f" (fewer than measure.min_timed_steps={settings.min_timed_steps}: marked "
               "noisy)" if stats.count < settings.min_timed_steps else "")
        return (f"timed {stats.count} of {settings.timed_steps} steps: one more would not have "
                f"ended before the trial's time limit{few}")
    if timed.timing.stopped_by_time:
        return (f"timed {stats.count} of {settings.timed_steps} steps: "
                f"max_timed_s={settings.max_timed_s} reached")
    return ""


def _quality_guard(result: TrialResult, workload: Any, run: Any, batch_size: int) -> None:
    """An inference workload's quality on real labelled data, under the candidate's numerics,
    in the timed batch size (no new shape to compile)."""
    import torch

    def quality_of(inputs: Any) -> Any:  # on the host: the workload keeps its labels there
        return torch.cat([run.predict(chunk).cpu() for chunk in inputs.split(batch_size)])

    guard_started = time.perf_counter()
    quality = float(workload.quality(quality_of))
    result.guard_losses = [quality]
    result.guard_loss = quality
    result.metrics["quality"] = quality
    result.metrics["guard_s"] = time.perf_counter() - guard_started


def _loss_guard(result: TrialResult, workload: Any, setup: Any, config: TrialConfig) -> None:
    """A training workload's fixed experiment: its losses under the candidate's numerics."""
    from tuner.worker import guard

    guard_started = time.perf_counter()
    losses = guard.guard_losses(workload, setup, config.guard)
    result.guard_losses = losses
    result.guard_loss = guard.guard_value(losses)
    result.metrics["guard_s"] = time.perf_counter() - guard_started


def _memory_policy() -> str:
    """The NUMA memory policy of this process's heap, from /proc/self/numa_maps ("default", or
    "bind:0" under numactl --membind=0): what a numa choice really did."""
    try:
        with open("/proc/self/numa_maps", encoding="utf-8") as numa_maps:
            for line in numa_maps:
                if "heap" in line:
                    return line.split()[1]
    except (OSError, IndexError):
        pass
    return "unknown"


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text or "oom" in text.split()


def failure_result(error: BaseException) -> TrialResult:
    """A trial's exception as data: out of memory (host or GPU) or failed, with its first line."""
    status = OOM if _is_out_of_memory(error) else FAILED
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    limit = os.environ.get("TUNER_MEMORY_LIMIT_MB")
    if status == OOM and limit and "cuda" not in first_line.lower():  # the host's cap, not a GPU's
        first_line += f" (trial memory limit {int(limit):,} MB: trial.memory_mb)"
    return TrialResult(status=status, reason=f"{type(error).__name__}: {first_line}",
                       info={"traceback": traceback.format_exc()[-4000:]})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tuner.worker CONFIG.json RESULT.json", file=sys.stderr)
        return 2
    config_path, result_path = Path(args[0]), Path(args[1])
    config = TrialConfig.from_json(config_path.read_text(encoding="utf-8"))
    log = pg.ProgressLog(result_path.with_name(pg.FILE_NAME))
    try:
        result = run_trial(config, log)
    except BaseException as error:  # noqa: BLE001 - every failure is reported as data
        result = failure_result(error)
    log.close()
    partial = result_path.with_suffix(".partial")
    partial.write_text(result.to_json(), encoding="utf-8")
    partial.replace(result_path)  # the executor never reads a half-written result
    return 0


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown: the result is already on disk, and
    unwinding torch and its compiler's modules takes ~0.7 s per trial (a fifth of a small
    trial's wall time) that measures nothing. DataLoader workers exit when they see their
    parent gone; the executor also kills the whole process group."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

