"""The user's own code as the workload: a function (`workload.function`) or a script
(`workload.script`) that runs its own loop, marked by `tuned.steps(loader)`.

The trial calls the job twice in its process. First to measure: `Tuned.load()` hands the job
the trial's config, and each pass of `tuned.steps` is one step on the same step clock as the
tuner's own loop (`rounds.timed_rounds`: warm-up, timed steps, re-measure while noisy, the
deadline); when the clock is done, `steps` raises `MeasurementDone`, which ends the job there.
Then, when the guard runs, once more from the guard's seed at the guard's batch size without
loader workers, for `guard.steps + 1` steps: what it reports through `tuned.report` (its loss,
or its quality for inference) is the guard's figure, compared with the baseline's as for any
workload.
"""

from __future__ import annotations

import gc
import random
import runpy
import sys
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuner import progress as pg
from tuner.knobs import RunSetup
from tuner.trial import TrialConfig
from tuner.worker import measure, runner
from tuner.worker.rounds import NoTimedStep, Timed, timed_rounds


class MeasurementDone(BaseException):
    """Raised from `tuned.steps` once the tuner has what it needs: it ends the job there. A
    BaseException, so the job's own `except Exception` does not swallow it."""


class JobError(Exception):
    """The job did not give what a trial needs (no marked step, no reported loss)."""


@dataclass
class Session:
    """One call of the job inside a trial: what `Tuned` reads and feeds while it runs."""

    config: TrialConfig
    setup: RunSetup
    guard: bool  # the guard's run: fixed seed, guard batch size, no timing
    log: pg.ProgressLog
    called_at: float = field(default_factory=time.perf_counter)
    clock: Generator[None, None, Timed] | None = None
    timed: Timed | None = None
    steps_started: int = 0
    samples_per_step: int | None = None  # from the first batch's size
    batch_samples: int | None = None  # the first batch's size
    reported: list[float] = field(default_factory=list)
    build_s: float = 0.0
    begun_at_loop_end: bool = False

    def before_step(self) -> None:
        """The previous step ends and the next begins: called once a step's (first) batch is
        fetched, so a step's time is one step's work and one fetch."""
        if self.guard:
            if self.steps_started > self.config.guard.steps:
                raise MeasurementDone
            self.steps_started += 1
            return
        if self.clock is None:  # the first step: what ran before it built the job
            self.build_s = time.perf_counter() - self.called_at
            self.clock = timed_rounds(self.config, self.setup.batch_size, self.synchronize,
                                      self.setup.compile_options is not None, self.log,
                                      self.build_s)
        if self.timed is not None:
            raise MeasurementDone
        try:
            next(self.clock)
        except StopIteration as end:
            self.timed = end.value
            raise MeasurementDone from None
        self.steps_started += 1

    def fetched(self, index: int, batch: Any, every: int) -> None:
        """Batch `index` of a `steps` loop is fetched: each `every`-th begins a step (the first
        of a loop only if the loop before it has not begun it at its end)."""
        if index == 0 and self.begun_at_loop_end:
            self.begun_at_loop_end = False
        elif index % every == 0:
            self.before_step()
        if index == 0:
            self._saw(batch, every)

    def marked(self, samples: int) -> None:
        """A step begins in a loop the job does not write (`Tuned.mark_step`)."""
        self.before_step()
        if self.samples_per_step is None:
            self.samples_per_step = self.batch_samples = samples

    def loop_ended(self) -> None:
        """A `steps` loop ran out (an epoch's end): its last step ends here, and the next step
        begins, holding the work between epochs and the next loop's first fetch; if none
        comes, it is never timed."""
        self.before_step()
        self.begun_at_loop_end = True

    def _saw(self, batch: Any, every: int) -> None:
        """The first batch of a `steps` loop: a step's samples are `every` batches of its size."""
        if self.samples_per_step is None:
            self.batch_samples = leading_size(batch)
            self.samples_per_step = (None if self.batch_samples is None
                                     else self.batch_samples * every)

    def synchronize(self) -> None:
        runner.synchronize(self.setup)

    def report(self, value: float) -> None:
        self.reported.append(value)

    def finish(self) -> None:
        """The job returned (out of data) before the clock was done: keep what it timed."""
        if self.guard or self.clock is None or self.timed is not None:
            return
        try:
            self.clock.throw(measure.OutOfData())
        except StopIteration as end:
            self.timed = end.value


_ACTIVE: Session | None = None


def active() -> Session | None:
    """The session of the job running in this trial now, if any (`Tuned.load` asks)."""
    return _ACTIVE


@dataclass
class Measured:
    """What the measuring call of the job gave."""

    timed: Timed
    build_s: float
    samples_per_step: int
    batch_samples: int | None  # the first batch's, to check the batch_size knob acted
    compiled: bool


def measure_job(config: TrialConfig, setup: RunSetup, log: pg.ProgressLog,
                started: float) -> Measured:
    """Call the job under the step clock; its timing, or JobError saying what it lacks."""
    log.phase(pg.BUILDING, started_at=time.time() - (time.perf_counter() - started),
              batch_size=setup.batch_size, planned_steps=config.measure.timed_steps)
    _seed(config.seed)
    session = Session(config, setup, guard=False, log=log)
    try:
        _call(config, session)
    except NoTimedStep as error:
        raise JobError(f"{_name(config)}: {error}: its loop (tuned.steps) gave fewer batches "
                       f"than measure.warmup_steps={config.measure.warmup_steps} + 1; give it "
                       "more data or epochs") from None
    if session.timed is None:
        raise JobError(f"{_name(config)} ended without a timed step: mark its loop with "
                       "`for batch in tuned.steps(loader)` (tuned = tuner.Tuned.load())")
    return Measured(session.timed, session.build_s,
                    session.samples_per_step or setup.batch_size, session.batch_samples,
                    setup.compile_options is not None)


def guard_job(config: TrialConfig, setup: RunSetup, log: pg.ProgressLog) -> list[float]:
    """Call the job again as the guard's fixed experiment; the figures it reported."""
    import dataclasses

    gc.collect()  # the measured call's model and loader are garbage now
    guard_setup = dataclasses.replace(setup, num_workers=0,  # loading order cannot matter
                                      batch_size=config.guard.batch_size)
    _seed(config.guard.seed)
    session = Session(config, guard_setup, guard=True, log=log)
    _call(config, session)
    if not session.reported:
        what = "quality" if config.workload.scenario == "infer" else "loss"
        raise JobError(f"{_name(config)} reported no {what} for the accuracy guard: call "
                       f"tuned.report({what}=...) in its loop, or set guard: {{run: false}}")
    return session.reported


def _call(config: TrialConfig, session: Session) -> None:
    """Run the job with `session` active, to its end or to MeasurementDone."""
    global _ACTIVE
    _ACTIVE = session
    try:
        _job(config)()
    except MeasurementDone:
        pass
    except SystemExit as error:  # a script's sys.exit(0) is its normal end
        if error.code not in (None, 0):
            raise JobError(f"{_name(config)} exited with status {error.code}") from None
    finally:
        _ACTIVE = None
    session.finish()


def _job(config: TrialConfig) -> Callable[[], Any]:
    spec = config.workload
    if spec.job == "script":
        def script() -> None:
            folder = str(Path(spec.name).parent)
            argv, path = sys.argv, list(sys.path)
            sys.argv = [spec.name, *spec.args]
            sys.path.insert(0, folder)  # as `python script.py` sees its own folder
            try:
                runpy.run_path(spec.name, run_name="__main__")
            finally:
                sys.argv, sys.path[:] = argv, path

        return script
    import importlib

    module_name, _, function_name = spec.name.partition(":")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise JobError(f"workload.function {spec.name}: {module_name} has no function "
                       f"{function_name}")
    return lambda: function(**spec.options)


def _name(config: TrialConfig) -> str:
    spec = config.workload
    return f"your {spec.job} {Path(spec.name).name if spec.job == 'script' else spec.name}"


def _seed(seed: int) -> None:
    """The guard's fixed seed for every generator a job's data and model are likely to use."""
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def leading_size(batch: Any) -> int | None:
    """The number of samples in a batch: the first dimension of its first tensor, found in
    dicts, lists and tuples."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    values = batch.values() if isinstance(batch, Mapping) else (
        batch if isinstance(batch, list | tuple) else ())
    for value in values:
        size = leading_size(value)
        if size is not None:
            return size
    return None
