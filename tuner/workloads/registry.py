"""Built-in workload names, resolved lazily so the driver can validate without importing torch."""

from __future__ import annotations

import importlib
from typing import Any

from tuner.trial import WorkloadSpec

BUILTIN_WORKLOADS: dict[str, str] = {
    "resnet50": "tuner.workloads.vision:resnet50",
    "torchvision": "tuner.workloads.vision:torchvision_classifier",
    "tiny_cnn": "tuner.workloads.vision:tiny_cnn",
    "torchvision_infer": "tuner.workloads.vision:torchvision_infer",
    "digits_cnn": "tuner.workloads.digits:digits_cnn",
}


TRAIN_METHODS = ("build_model", "dataset", "loss", "optimizer")
INFER_METHODS = ("build_model", "dataset", "example_input", "quality")


def build_workload(spec: WorkloadSpec) -> Any:
    """Import the factory (built-in or `package.module:factory`) and call it with the options."""
    target = BUILTIN_WORKLOADS.get(spec.name, spec.name)
    module_name, _, factory_name = target.partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    try:
        workload = factory(**spec.options)
    except TypeError as error:
        raise ValueError(f"workload {spec.name!r}: bad options {spec.options}: {error}") from None
    scenario = getattr(workload, "scenario", "train")
    needed = INFER_METHODS if scenario == "infer" else TRAIN_METHODS
    missing = [name for name in needed if not callable(getattr(workload, name, None))]
    if missing:  # a name that is not a workload factory at all (os:getcwd, a typo'd module)
        base = "InferWorkload" if scenario == "infer" else "TrainWorkload"
        raise TypeError(f"workload {spec.name!r} returned {type(workload).__name__}, not a "
                        f"{scenario} workload: it lacks {', '.join(missing)} (subclass "
                        f"tuner.workloads.base.{base})")
    return workload
