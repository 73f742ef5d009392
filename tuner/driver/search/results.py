"""What a finished trial's result means for the study: the metrics the driver derives (cost,
speed-up, the guard's verdict), what the study learns (unsupported choices, batch sizes that
ran out of memory, guard values), and how Optuna is to be told.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from tuner import metrics as mx
from tuner.driver import cost, limits, payoff
from tuner.driver import guard as gd
from tuner.driver import ranking as rk
from tuner.driver import study as st
from tuner.driver.space import Space
from tuner.trial import (
    CRASHED,
    FAILED,
    LOST,
    OOM,
    PRUNED,
    TIMEOUT,
    UNSUPPORTED,
    TrialResult,
)

# what the storage keeps of where and how a trial ran (the rest of result.info is transient)
INFO_KEPT = ("note", "node_id", "hostname", "env_set", "versions", "memory_limit_mb",
             "pinned_cores", "affinity", "preloaded", "torch_threads", "interop_threads",
             "placement", "memory_policy", "scenario", "gpu", "gpu_ids", "started_at",
             "ended_at", "device", "cpu_features", "gpu_capability", "niceness", "progress")


# the figures kept as attributes of their own too (the metrics blob holds them all)
SCALAR_ATTRS = (mx.SAMPLES_PER_SEC, mx.SAMPLES_PER_DOLLAR, mx.SPEEDUP, mx.STEP_TIME_CV)
LOGGED = (FAILED, OOM, TIMEOUT, CRASHED)  # statuses whose output a user needs to read
LOG_CHARS = 8000  # of a failed trial's output kept: the traceback's end and the last lines


def trial_log(result: TrialResult) -> str:
    """What a trial that did not end ok left to read: its traceback and its output's tail."""
    if result.status not in LOGGED:
        return ""
    parts = []
    if result.info.get("traceback"):
        parts.append(str(result.info["traceback"]).rstrip())
    tail = str(result.info.get("stderr_tail", "")).rstrip()
    if tail and tail not in "\n".join(parts):
        parts.append("-- the trial process's last output --\n" + tail)
    return "\n\n".join(parts)[-LOG_CHARS:]


@dataclass
class Running:
    """A trial the search started and has not closed."""

    trial: Any  # the optuna.Trial from ask()
    knobs: dict[str, Any]
    role: str
    key: str  # the numerics key: the guard's cache key
    item: Any = None  # the executor's handle: where to read the trial's progress
    started: float = 0.0
    time_limit_s: float = 0.0

    @property
    def number(self) -> int:
        return int(self.trial.number)


@dataclass
class Interpreted:
    """How to close the trial: its attributes, and Optuna's values or state."""

    metrics: dict[str, float]
    violation: float
    attrs: dict[str, Any] = field(default_factory=dict)
    values: list[float] | None = None
    state: TrialState | None = None
    pruned_at: tuple[float, int] | None = None  # what the sampler sees of a pruned trial
    constraint: float | None = None  # Optuna's constraint value, when it is set
    lost: bool = False  # not the config's doing: re-queue it
    run_again_with_s: float | None = None  # a baseline out of time: its next limit


def interpret(study: Any, space: Space, running: Running, result: TrialResult) -> Interpreted:
    """Derive, learn, decide: the study's memos are updated here; the caller tells Optuna."""
    metrics = dict(result.metrics)
    found = 0.0
    if result.ok:
        metrics.update(derived(study, space, running, result))
        found = metrics.get(mx.GUARD_VIOLATION, 0.0)
        if found > 0:
            result.reason = gd.guard_reason(space.guard, metrics,
                                            result.info.get("scenario", "train"))
    if result.status == UNSUPPORTED and result.info.get("unsupported_choice"):
        st.remember_unsupported(study, result.info["unsupported_choice"], result.reason)
    if result.status == OOM:  # larger batches with the same numerics are skipped from now on
        st.remember_out_of_memory(study, running.knobs, running.number)
    info = {key: value for key, value in result.info.items() if key in INFO_KEPT}
    verdict = Interpreted(metrics, found, attrs={
        st.STATUS: result.status, st.REASON: result.reason, st.METRICS: metrics,
        st.CONSTRAINT: found, st.STEP_TIMES: result.step_times_s,
        st.GUARD_LOSSES: result.guard_losses, st.INFO: info,
        # scalars beside the metrics blob: what optuna-dashboard's trial table can sort by
        **{name: metrics[name] for name in SCALAR_ATTRS if name in metrics}})
    log = trial_log(result)
    if log:
        verdict.attrs[st.LOG] = log
    if result.status == OOM:
        verdict.constraint = 1.0  # infeasible: the sampler moves away
    if result.ok:
        verdict.constraint = found
        verdict.values = [metrics[name] for name in space.objectives]
    elif result.status == PRUNED:  # where it stood when cut
        verdict.state = TrialState.PRUNED
        verdict.pruned_at = (metrics[mx.SAMPLES_PER_SEC], int(metrics.get(mx.TIMED_STEPS, 0)))
    elif result.status == LOST:
        verdict.lost = True
    else:
        # PRUNED, unlike FAIL, is seen by the sampler: it learns which choices and batch sizes
        # do not run
        verdict.state = (TrialState.PRUNED if result.status in (UNSUPPORTED, OOM)
                         else TrialState.FAIL)
        if result.status == TIMEOUT and running.role == st.BASELINE:
            verdict.run_again_with_s = baseline_limit(study, space, running, result)
    return verdict


def baseline_limit(study: Any, space: Space, running: Running,
                   result: TrialResult) -> float | None:
    """A baseline out of time runs again once (counted against no budget), with a limit sized
    from the steps it timed; None when it already had its second chance."""
    if st.BASELINE_LIMIT in study.user_attrs:
        return None  # the search stops, naming the flag
    limit = limits.derived_limit_s(result.info.get("progress", {}), space.measure,
                                   space.guard.settings(True), running.time_limit_s)
    study.set_user_attr(st.BASELINE_LIMIT, limit)
    return limit


def derived(study: Any, space: Space, running: Running, result: TrialResult) -> dict[str, float]:
    """Metrics the driver adds: cost, speed-up, guard verdict (from the cache if not run)."""
    out: dict[str, float] = {}
    sps = result.metrics[mx.SAMPLES_PER_SEC]
    price = space.cost.price_for(running.knobs.get("device", "cpu"))
    out[mx.PRICE_PER_HOUR] = price
    out[mx.SAMPLES_PER_DOLLAR] = cost.samples_per_dollar(sps, price)
    if running.role == st.BASELINE:
        out[mx.SPEEDUP] = 1.0
        if result.guard_loss is not None:
            study.set_user_attr(st.GUARD_REFERENCE, result.guard_loss)
    else:
        base = st.baseline_trial(study)
        if base is not None:
            out[mx.SPEEDUP] = sps / base.user_attrs[st.METRICS][mx.SAMPLES_PER_SEC]
    out.update(compile_figures(study, space, running, result.metrics))
    measured = result.info.get("headroom", {})
    if "roofs" in measured:  # the first trial on its device counted and measured them
        st.remember_headroom(study, measured)
    out.update(headroom_figures(study.user_attrs.get(st.HEADROOM, {}), running.knobs, sps))
    if result.guard_loss is not None:
        st.remember_guard(study, running.key, result.guard_loss)
    loss = result.guard_loss
    if loss is None:
        loss = st.guard_cache(study).get(running.key)
    reference = study.user_attrs.get(st.GUARD_REFERENCE)
    if loss is not None and reference is not None:
        out[mx.GUARD_LOSS] = loss
        out[mx.GUARD_REFERENCE] = reference
        out[mx.GUARD_VIOLATION] = gd.violation(loss, reference, space.guard.tolerance,
                                            space.guard.mode)
        if math.isinf(out[mx.GUARD_VIOLATION]):
            out[mx.GUARD_VIOLATION] = 1e9  # storable, still > 0
    return out


def compile_figures(study: Any, space: Space, running: Running,
                    metrics: dict[str, float]) -> dict[str, float]:
    """A job's throughput with its compile (measure.job_steps), and for a compiled trial whose
    eager twin was measured, the steps after which compiling pays off."""
    out: dict[str, float] = {}
    step_s = metrics.get(mx.STEP_TIME_MEDIAN_S, 0.0)
    if space.measure.job_steps is not None:
        out[mx.JOB_SAMPLES_PER_SEC] = payoff.job_samples_per_sec(
            metrics[mx.SAMPLES_PER_SEC], step_s, metrics.get(mx.COMPILE_S, 0.0),
            space.measure.job_steps)
    if running.knobs.get("compile", payoff.EAGER) == payoff.EAGER:
        return out
    row = rk.Row(running.number, running.role, "ok", "", running.knobs, metrics, 0.0)
    found = payoff.payoff_of(row, [r for r in rk.rows(study) if r.duplicate_of is None])
    if found is not None:
        out[mx.COMPILE_STEP_SAVING_S] = found.saving_s
        if math.isfinite(found.steps):
            out[mx.COMPILE_PAYOFF_STEPS] = found.steps
    return out


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def headroom_figures(figures: dict[str, Any], knobs: dict[str, Any],
                     samples_per_sec: float) -> dict[str, float]:
    """Achieved TFLOP/s (the study's FLOPs per sample x samples/s) and its share of the
    device's matmul roof for the trial's dtype (none for a quantized model: no int8 roof)."""
    flops = figures.get("flops_per_sample")
    if not flops:
        return {}
    achieved = flops * samples_per_sec
    out = {mx.ACHIEVED_TFLOPS: achieved / 1e12}
    dtype = DTYPES.get(str(knobs.get("dtype", "fp32")), "")
    roof = figures.get("roofs", {}).get(st.device_kind(knobs), {}).get(dtype)
    if roof and knobs.get("quantize", "none") == "none":
        out[mx.ROOF_SHARE] = achieved / roof
    return out
