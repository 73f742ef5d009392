"""The metrics a trial reports and the driver derives, in one registry: name, unit, which way is
better, who computes it. Objectives are the metrics a space may optimise; the study's
directions, the ranking, the tables and the plots all read them from here.

Adding an objective: one `Metric` entry with `objective=True` and, if the driver derives it, a
line in `tuner.driver.search.results.derived`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["maximize", "minimize"]  # Optuna's words for a direction
MAXIMIZE: Direction = "maximize"
MINIMIZE: Direction = "minimize"
TRIAL, DRIVER = "trial process", "driver"  # who computes a metric

# The names, so a typo is an import error, not a silent 0.0.
SAMPLES_PER_SEC = "samples_per_sec"
SAMPLES_PER_DOLLAR = "samples_per_dollar"
PRICE_PER_HOUR = "price_per_hour"
SPEEDUP = "speedup"
STEP_TIME_MEDIAN_S = "step_time_median_s"
STEP_TIME_IQR_S = "step_time_iqr_s"
STEP_TIME_CV = "step_time_cv"
TIMED_STEPS = "timed_steps"
NOISY = "noisy"
MEDIAN_ERROR = "median_error"
MEASURE_ROUNDS = "measure_rounds"
COMPILE_S = "compile_s"
COMPILE_PAYOFF_STEPS = "compile_payoff_steps"
COMPILE_STEP_SAVING_S = "compile_step_saving_s"
JOB_SAMPLES_PER_SEC = "job_samples_per_sec"
ACHIEVED_TFLOPS = "achieved_tflops"
ROOF_SHARE = "roof_share"
GPU_PEAK_RESERVED_MB = "gpu_peak_reserved_mb"
GUARD_LOSS = "guard_loss"
GUARD_REFERENCE = "guard_reference"
GUARD_VIOLATION = "guard_violation"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    direction: Direction  # which way is better
    computed_by: str  # TRIAL or DRIVER
    about: str
    objective: bool = False  # a space may optimise it

    @property
    def higher_is_better(self) -> bool:
        return self.direction == MAXIMIZE


REGISTRY: dict[str, Metric] = {metric.name: metric for metric in (
    Metric(SAMPLES_PER_SEC, "samples/s", MAXIMIZE, TRIAL,
           "batch size / median timed step (data loading inside the step)", objective=True),
    Metric(SAMPLES_PER_DOLLAR, "samples/USD", MAXIMIZE, DRIVER,
           "samples/s x 3600 / the device's price per hour", objective=True),
    Metric(PRICE_PER_HOUR, "USD/h", MINIMIZE, DRIVER, "the price of the trial's device"),
    Metric(SPEEDUP, "x", MAXIMIZE, DRIVER, "samples/s over the study's baseline trial"),
    Metric(STEP_TIME_MEDIAN_S, "s", MINIMIZE, TRIAL, "median timed step"),
    Metric(STEP_TIME_IQR_S, "s", MINIMIZE, TRIAL, "inter-quartile range of the timed steps"),
    Metric(STEP_TIME_CV, "", MINIMIZE, TRIAL, "standard deviation / mean of the timed steps"),
    Metric(TIMED_STEPS, "steps", MAXIMIZE, TRIAL, "steps in the kept measurement round"),
    Metric(MEDIAN_ERROR, "", MINIMIZE, TRIAL, "the median step's 95% interval half-width / "
           "median (1.58 IQR / sqrt(steps))"),
    Metric(NOISY, "", MINIMIZE, TRIAL, "1 when the kept round was too noisy to rank"),
    Metric(MEASURE_ROUNDS, "rounds", MINIMIZE, TRIAL, "measurement rounds run"),
    Metric(COMPILE_S, "s", MINIMIZE, TRIAL, "first warm-up step beyond a timed one"),
    Metric(COMPILE_PAYOFF_STEPS, "steps", MINIMIZE, DRIVER, "steps after which compiling "
           "pays off: compile_s / the step time saved against the eager twin (same config, "
           "compile none), when that was measured first"),
    Metric(ACHIEVED_TFLOPS, "TFLOP/s", MAXIMIZE, DRIVER, "the model's FLOPs per sample x "
           "samples/s (FLOPs counted once per study, eager fp32)"),
    Metric(ROOF_SHARE, "", MAXIMIZE, DRIVER, "achieved FLOP/s over the device's measured "
           "matmul roof for the trial's dtype"),
    Metric(COMPILE_STEP_SAVING_S, "s", MAXIMIZE, DRIVER, "the eager twin's median step minus "
           "this compiled trial's (<= 0: compiling never pays off)"),
    Metric(JOB_SAMPLES_PER_SEC, "samples/s", MAXIMIZE, DRIVER, "samples/s over a job of "
           "measure.job_steps steps, compile included: samples/s / (1 + compile_s / (job_steps "
           "x median step))", objective=True),
    Metric(GPU_PEAK_RESERVED_MB, "MB", MINIMIZE, TRIAL, "the CUDA caching allocator's peak"),
    Metric(GUARD_LOSS, "", MINIMIZE, TRIAL, "the accuracy guard's value for the config"),
    Metric(GUARD_REFERENCE, "", MINIMIZE, DRIVER, "the baseline's guard value"),
    Metric(GUARD_VIOLATION, "", MINIMIZE, DRIVER, "distance past the guard's tolerance (> 0: "
           "rejected)"),
)}

OBJECTIVES: tuple[str, ...] = tuple(name for name, metric in REGISTRY.items() if metric.objective)


def direction(name: str) -> Direction:
    return REGISTRY[name].direction


def directions(objectives: tuple[str, ...] | list[str]) -> list[Direction]:
    """Optuna's `directions` for a study over these objectives."""
    return [direction(name) for name in objectives]


def sort_key(name: str) -> float:
    """A multiplier that makes `sorted(..., key=value * sort_key(name))` put the best first."""
    return -1.0 if REGISTRY[name].higher_is_better else 1.0


def at_least_as_good(a: float, b: float, name: str) -> bool:
    return a >= b if REGISTRY[name].higher_is_better else a <= b


def unit(name: str, currency: str = "USD") -> str:
    return REGISTRY[name].unit.replace("USD", currency)
