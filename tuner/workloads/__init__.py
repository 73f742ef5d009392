"""Workloads: what is tuned (a model, its data, its step). See `base.TrainWorkload`."""

from tuner.workloads.registry import BUILTIN_WORKLOADS, build_workload

__all__ = ["BUILTIN_WORKLOADS", "build_workload"]
