"""What a search says on the terminal: one line per trial started and finished, the running
count, and warnings given once. Formatting only; it decides nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from tuner import metrics as mx
from tuner.driver import ranking as rk
from tuner.driver.search.results import trial_log
from tuner.driver.search.standing import UNCOUNTED, Standing, counted, duration
from tuner.trial import TrialResult


class Console:
    """The search's lines, through `out`; `once` keeps a warning from repeating."""

    def __init__(self, out: Callable[[str], None], currency: str,
                 room: str = "on the cluster", study: str = "", verbosity: int = 0,
                 min_timed_steps: int = 3) -> None:
        self.out = out
        self.currency = currency
        self.room = room  # where a trial waits for its cores: "on this machine" when local
        self.study = study  # named in the command that prints a failed trial's log
        self.verbosity = verbosity  # -1 (-q): warnings and the end only; 1 (-v): failed logs
        self.min_timed_steps = min_timed_steps  # fewer timed steps: never ranked, said so
        self.started = time.monotonic()
        self.standing = Standing()  # what the live footer and the progress lines say
        self._said: set[str] = set()

    def detail(self, line: str) -> None:
        """A line of the search's course (a trial started, measured, queued): left out by -q."""
        if self.verbosity >= 0:
            self.out(line)

    def failed_log(self, number: int, result: TrialResult) -> None:
        """-v: a failed trial's traceback and output under its line."""
        log = trial_log(result)
        if self.verbosity > 0 and log:
            self.out("\n".join(f"    | {line}" for line in log.splitlines()))

    def said(self, key: str) -> bool:
        return key in self._said

    def once(self, key: str, line: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.out(line)

    def elapsed(self) -> str:
        return duration(time.monotonic() - self.started)

    @staticmethod
    def counter(launched: int, to_run: int) -> str:
        if to_run >= UNCOUNTED:  # a budget of time only
            return f"[{launched}]"
        width = len(str(to_run))
        return f"[{launched:>{width}}/{to_run}]"

    def result_line(self, number: int, result: TrialResult, metrics: dict[str, float],
                    violation: float, best: rk.Row | None) -> str:
        """`trial 4 ok: 11.13 samples/s (4.99x baseline), ...  | best ...  [14m02s]`."""
        elapsed = self.elapsed()
        if not result.ok:
            where = (f" (its log: tuner log --study {self.study} --trial {number}, or "
                     f"trial.log in MLflow)" if trial_log(result) else "")
            return f"  trial {number} {result.status}: {result.reason}{where}  [{elapsed}]"
        verdicts = ["REJECTED"] if violation > 0 else []  # said even when also noisy
        steps = int(metrics.get(mx.TIMED_STEPS, self.min_timed_steps))
        if metrics.get(mx.NOISY) and steps < self.min_timed_steps:  # not noise: no time
            verdicts.append(f"TOO FEW STEPS ({steps} timed, {self.min_timed_steps} needed: "
                            "the time limit came first), never ranked")
        elif metrics.get(mx.NOISY):
            error = (f", median ±{metrics[mx.MEDIAN_ERROR]:.0%}"
                     if metrics.get(mx.MEDIAN_ERROR) else "")
            rounds = int(metrics.get(mx.MEASURE_ROUNDS, 1))
            verdicts.append(f"NOISY after {counted(rounds, 'round')}{error}, "
                            "never ranked")
        verdict = " and ".join(verdicts) or "ok"
        speedup = metrics.get(mx.SPEEDUP, 0.0)
        line = (f"  trial {number} {verdict}: {metrics[mx.SAMPLES_PER_SEC]:.2f} samples/s "
                f"({speedup:.2f}x baseline), {metrics[mx.SAMPLES_PER_DOLLAR]:,.0f} "
                f"samples/{self.currency}, cv {metrics[mx.STEP_TIME_CV]:.1%}")
        if metrics.get(mx.COMPILE_S):
            line += f", compile {metrics[mx.COMPILE_S]:.1f} s"
            if mx.COMPILE_PAYOFF_STEPS in metrics:  # against its eager twin, measured earlier
                line += (f" (pays off after "
                         f"~{math.ceil(round(metrics[mx.COMPILE_PAYOFF_STEPS], 6)):,} steps)")
            elif mx.COMPILE_STEP_SAVING_S in metrics:
                line += " (never pays off: no faster a step than its eager twin)"
        if mx.ACHIEVED_TFLOPS in metrics:
            line += f", {metrics[mx.ACHIEVED_TFLOPS]:.3g} TFLOP/s"
            if mx.ROOF_SHARE in metrics:
                line += f" ({metrics[mx.ROOF_SHARE]:.0%} of the matmul roof)"
        if mx.GPU_PEAK_RESERVED_MB in metrics:
            line += f", GPU peak {metrics[mx.GPU_PEAK_RESERVED_MB]:,.0f} MB"
        if violation > 0:
            line += f"; {result.reason}"
        if best is not None:
            line += f"  | best {best.samples_per_sec:.2f} samples/s (trial {best.number})"
        return line + f"  [{elapsed}]"

    @staticmethod
    def measured(result: TrialResult) -> str:
        """What a trial measured, for a line that says it could not be recorded."""
        figure = result.metrics.get(mx.SAMPLES_PER_SEC)
        return result.status + (f", {figure:,.2f} samples/s" if figure else "") + (
            f" ({result.reason[:200]})" if result.reason else "")

    def still_running(self, number: int, running_s: float, limit_s: float, phase: str) -> None:
        self.detail(f"  trial {number} still running: {duration(running_s)} of its "
                    f"{duration(limit_s)} limit" + (f"; {phase}" if phase else "")
                    + f"  ({self.standing.summary()})")

    def warn_if_niced(self, result: TrialResult) -> None:
        niceness = result.info.get("niceness", 0)
        if niceness:
            self.once("niced", f"warning: trial processes run at niceness {niceness} (inherited "
                      "from Ray's workers; resetting it needs root): other work on the node "
                      "preempts the timed steps. Start the Ray nodes with RAY_worker_niceness=0")

    def started_line(self, counter: str, number: int, role: str, retry: int | None,
                     item: Any, limit_s: float, changes: str) -> None:
        again = f", retry of trial {retry}" if retry is not None else ""
        gpus = f", {item.gpus} GPU" if item.gpus else ""
        verb = f"waits for room {self.room}" if item.waiting else "started"
        self.detail(f"{counter} trial {number} {verb} ({role}{again}, "
                    f"{counted(item.cpus, 'CPU')}{gpus}, limit "
                    f"{duration(limit_s)}): {changes}")
