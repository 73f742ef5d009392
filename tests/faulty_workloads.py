"""User workloads (`faulty_workloads:NAME`) that fail for real, in the trial process."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from tuner.workloads.vision import TinyCNN


class _Raises(TinyCNN):
    def build_model(self) -> Any:
        raise RuntimeError("the model cannot be built: deliberate test failure")


class _Hangs(TinyCNN):
    def build_model(self) -> Any:
        time.sleep(3600)


class _Aborts(TinyCNN):
    def build_model(self) -> Any:
        os.abort()


class _TooBig(TinyCNN):
    def build_model(self) -> Any:
        import torch

        torch.empty(2**46, dtype=torch.uint8)  # 64 TiB: the allocator refuses


def too_big(**options: Any) -> TinyCNN:
    return _TooBig(**options)


def raises(**options: Any) -> TinyCNN:
    return _Raises(**options)


def hangs(**options: Any) -> TinyCNN:
    return _Hangs(**options)


def aborts(**options: Any) -> TinyCNN:
    return _Aborts(**options)


class _Chaos(TinyCNN):
    """Fails at its first training step in the way its batch size picks, so one study can
    hold every fault (the guard's batch size, 8, is healthy):

    1 raises, 2 aborts (SIGABRT), 3 segfaults, 128 grows its memory until stopped, 5 hangs,
    64 is the fastest but noisy in every round (median fast, one step in four slow),
    32 is noisy in its first round only (re-measuring settles it); others are healthy.
    """

    calls = 0

    def loss(self, output: Any, target: Any) -> Any:
        batch = output.shape[0]
        self.calls += 1
        if batch == 1:
            raise RuntimeError("deliberate failure in the training step")
        if batch == 2:
            os.abort()
        if batch == 3:
            import ctypes

            ctypes.string_at(0)  # SIGSEGV
        if batch == 128:
            import torch

            hoard = []
            while True:  # 64 MB a tenth of a second, touched, until the supervisor steps in
                hoard.append(torch.ones(64 * 2**20, dtype=torch.uint8))
                time.sleep(0.1)
        if batch == 5:
            time.sleep(3600)
        if batch == 64 and self.calls % 4 == 0:
            time.sleep(0.5)
        elif batch != 64:
            time.sleep(0.01)  # so that 64 is the fastest on its median
        if batch == 32 and self.calls <= 6 and self.calls % 2 == 0:
            time.sleep(0.3)
        return super().loss(output, target)


def chaos(**options: Any) -> TinyCNN:
    return _Chaos(**options)


class _Slow(TinyCNN):
    """A healthy workload whose every step takes at least 0.3 s: trials last long enough for
    a test to kill their search while they run."""

    def loss(self, output: Any, target: Any) -> Any:
        time.sleep(0.3)
        return super().loss(output, target)


def slow(**options: Any) -> TinyCNN:
    return _Slow(**options)


@dataclass
class _Slowed(TinyCNN):
    """A healthy workload with a fixed cost per step (as a per-step sync would add), and an
    injectable slowdown per sample in its data loading (as a slower preprocessing release
    would): real sleeps inside the timed step, so every config is really slower."""

    delay_per_step_s: float = 0.0
    delay_per_sample_s: float = 0.0

    def dataset(self, num_samples: int, seed: int | None = None) -> Any:
        return _SlowItems(super().dataset(num_samples, seed), self.delay_per_sample_s)

    def loss(self, output: Any, target: Any) -> Any:
        time.sleep(self.delay_per_step_s)
        return super().loss(output, target)


class _SlowItems:
    """A data set's items, each `delay_s` late; `held`: memory the data set keeps (shared with
    forked loader workers)."""

    def __init__(self, inner: Any, delay_s: float, held: Any = None) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.held = held

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Any:
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.inner[index]


def slowed(**options: Any) -> TinyCNN:
    return _Slowed(**options)


@dataclass
class _Stalls(TinyCNN):
    """Steps of `step_s`, until call `healthy_calls`: then it hangs (a deadlock, a stuck
    collective), or with `aborts` dies by SIGABRT, after steps were timed."""

    step_s: float = 0.3
    healthy_calls: int = 4
    aborts: bool = False
    calls: int = 0

    def loss(self, output: Any, target: Any) -> Any:
        self.calls += 1
        if self.calls > self.healthy_calls and self.aborts:
            os.abort()
        time.sleep(self.step_s if self.calls <= self.healthy_calls else 3600)
        return super().loss(output, target)


def stalls(**options: Any) -> TinyCNN:
    return _Stalls(**options)


@dataclass
class _Jittery(TinyCNN):
    """Slow steps, alternately short and long: every round is noisy (cv 0.5)."""

    short_s: float = 0.3
    long_s: float = 0.9
    calls: int = 0

    def loss(self, output: Any, target: Any) -> Any:
        self.calls += 1
        time.sleep(self.long_s if self.calls % 2 else self.short_s)
        return super().loss(output, target)


def jittery(**options: Any) -> TinyCNN:
    return _Jittery(**options)


@dataclass
class _SharesMemory(TinyCNN):
    """A data set holding `shared_mb` of touched memory, which forked DataLoader workers share
    with the trial process (as a data set read into memory is); slow steps, so the supervisor
    looks at the group while the workers live."""

    shared_mb: int = 500
    step_s: float = 0.2

    def dataset(self, num_samples: int, seed: int | None = None) -> Any:
        import torch

        return _SlowItems(super().dataset(num_samples, seed), 0.0,
                          held=torch.ones(self.shared_mb * 2**20, dtype=torch.uint8))

    def loss(self, output: Any, target: Any) -> Any:
        time.sleep(self.step_s)
        return super().loss(output, target)


def shares_memory(**options: Any) -> TinyCNN:
    return _SharesMemory(**options)


CREDENTIAL_WORDS = ("PASSWORD", "TOKEN", "SECRET", "CREDENTIAL", "ACCESS_KEY")


def environment_probe(expect: tuple[str, ...] = (), **options: Any) -> TinyCNN:
    """A healthy workload that fails, naming them, when credentials reached its process or a
    variable it expects did not: workload code sees its trial process's environment."""
    leaked = sorted(name for name in os.environ
                    if any(word in name for word in CREDENTIAL_WORDS)
                    or name in ("PGPASSFILE", "TUNER_TEST_POSTGRES", "MLFLOW_TRACKING_URI"))
    missing = [name for name in expect if name not in os.environ]
    if leaked or missing:
        raise RuntimeError(f"leaked: {leaked}; missing: {missing}")
    return TinyCNN(**options)


_PROCESS_INDEX: list[int] = []  # this trial process's place among the study's processes


@dataclass
class _Drifting(TinyCNN):
    """A machine whose speed drifts: steps of `step_s`, `slow_factor` times longer in the
    trial processes numbered in `slow` (counted in order of start through the file `marks`:
    trials run one at a time), as a shared VM slows for a few minutes and comes back."""

    marks: str = ""
    slow: tuple[int, ...] = ()
    step_s: float = 0.05
    slow_factor: float = 2.0

    def build_model(self) -> Any:
        if not _PROCESS_INDEX:
            with open(self.marks, "a+", encoding="utf-8") as file:
                file.seek(0)
                _PROCESS_INDEX.append(len(file.readlines()))
                file.write(f"{os.getpid()}\n")
        return super().build_model()

    def loss(self, output: Any, target: Any) -> Any:
        slow = _PROCESS_INDEX and _PROCESS_INDEX[0] in self.slow
        time.sleep(self.step_s * (self.slow_factor if slow else 1.0))
        return super().loss(output, target)


def drifting(**options: Any) -> TinyCNN:
    options["slow"] = tuple(options.get("slow", ()))
    return _Drifting(**options)
