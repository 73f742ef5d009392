"""The accuracy guard: a fixed experiment whose loss must stay near the baseline's.

The trial process's half: `guard_losses` runs the experiment, `guard_value` sums it up. The
driver's half, the verdict against the baseline, is `tuner.driver.guard`.
"""

from __future__ import annotations

from typing import Any

from tuner.trial import GuardSettings


def guard_value(losses: list[float]) -> float:
    """The guarded number: the mean loss over the fixed experiment's steps.

    Not the last loss alone: a few SGD steps on one batch oscillate (ResNet-50, batch 4, fp32:
    2.63, 1.63, 2.04, 2.38), so the last value amplifies harmless rounding (bf16 moved it 7.5%
    while moving the first forward by 0.85% and the mean by 2.2%). The mean still moves when a
    config really changes training: fp16 underflow that stops learning shifts it by several %.
    """
    return sum(losses) / len(losses)


def guard_losses(workload: Any, setup: Any, settings: GuardSettings) -> list[float]:
    """Train `steps` steps from a fixed seed on fixed data under the candidate's numerics, then
    one more: the losses of all steps, the last one being the loss after `steps` updates.

    Every loss comes from a training step rather than an eval pass, so a compiled model reuses
    its training graph instead of compiling another one.
    """
    import dataclasses

    import torch

    from tuner.worker.runner import TrainRun

    guard_setup = dataclasses.replace(setup, num_workers=0)  # loading order cannot matter
    torch.manual_seed(settings.seed)
    run = TrainRun(workload, guard_setup, num_batches=1, batch_size=settings.batch_size,
                   data_seed=settings.seed)
    batch = next(run.batches())
    return [float(run.step(batch)) for _ in range(settings.steps + 1)]
