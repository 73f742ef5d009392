"""The search space: a YAML file (`loading`) read section by section (`reader`, on the generic
checks of `fields`) into typed objects (`model`) that hold every default."""

from tuner.driver.space.loading import load_space, parse_space
from tuner.driver.space.model import (
    Budget,
    Cost,
    Guard,
    IntRange,
    KnobSpace,
    Nightly,
    Sampler,
    Space,
    TrialLimits,
    WorkerPrice,
    powers_of_two,
)
from tuner.driver.space.reader import SECTIONS

__all__ = ["SECTIONS", "Budget", "Cost", "Guard", "IntRange", "KnobSpace", "Nightly", "Sampler",
           "Space", "TrialLimits", "WorkerPrice", "load_space", "parse_space", "powers_of_two"]
