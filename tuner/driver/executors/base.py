"""Where trials run: the interface the search uses, and the handle it holds for a trial.

An executor gives each trial a fresh process on a node (through the node supervisor,
`tuner.node.supervisor.run_trial_process`, which it runs there with the trial's resources) and
hands back a TrialResult. The search never sees how: Ray's (`executors.ray`) is the default;
another (Kubernetes Jobs, a batch scheduler) is one new module implementing `Executor`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from tuner.knobs import REGISTRY
from tuner.trial import TrialConfig, TrialResult


@dataclass
class Submitted:
    """A trial handed to an executor: waiting for room (`ref` None), or running since
    `started` (monotonic seconds)."""

    config: TrialConfig
    ref: Any
    cpus: int
    started: float
    gpus: int = 0
    placement_key: str = ""  # where its supervisor says which node it runs on
    node_id: str = ""  # that node, once read

    @property
    def waiting(self) -> bool:
        return self.ref is None


class Executor(ABC):
    """Runs trial configs; the search calls `start` before it opens any store (a bad address
    fails first, with nothing made), then `submit` / `wait_any` until done, then `shutdown`."""

    cluster_gpus: int = 0  # GPUs the executor can give trials, in all

    @abstractmethod
    def start(self) -> None:
        """Connect (or start a local cluster); a bad address raises UserError."""

    @property
    def shares_this_host(self) -> bool:
        """Whether trials run on this machine's cores, so only one search may run here at a
        time (the search then takes the host lock before `start`)."""
        return False

    @property
    def room(self) -> str:
        """Where a trial waits for its CPUs (and GPU) to be free, for the console's words."""
        return "on the cluster"

    @abstractmethod
    def describe(self) -> str:
        """Where trials run, in one line for the search's opening lines ("ray: 1 node, ...")."""

    def unschedulable(self, knobs: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        """(the choice, why) when no node could ever run this config."""
        return unschedulable(knobs, gpus_for(knobs), self.cluster_gpus)

    @abstractmethod
    def submit(self, config: TrialConfig) -> Submitted:
        """Start the trial, or hold it until there is room: its wait is not its time."""

    @abstractmethod
    def wait_any(self, running: list[Submitted],
                 timeout_s: float) -> list[tuple[Submitted, TrialResult]]:
        """The trials that finished within `timeout_s`, with their results (maybe none)."""

    def progress(self, item: Submitted) -> str:
        """Where a running trial is ("timed step 3 of 5, 55 s a step"); "" if unknown."""
        return ""

    @abstractmethod
    def shutdown(self) -> None:
        """Release what `start` took."""


def gpus_for(knobs: dict[str, Any]) -> int:
    """The trial's GPU request (one for a CUDA trial)."""
    return max((REGISTRY[name].gpus(value) for name, value in knobs.items()), default=0)


def unschedulable(knobs: dict[str, Any], gpus_wanted: int,
                  cluster_gpus: int) -> tuple[dict[str, Any], str] | None:
    if gpus_wanted and cluster_gpus < gpus_wanted:
        device = {"device": knobs.get("device", "cuda")}
        return device, (f"device={device['device']}: the Ray cluster has no GPU (no node "
                        "declares one); run on a cluster with GPU nodes, or search device: [cpu]")
    return None
