"""Small jobs written as users write them (their own loop, marked by `tuned.steps`), run by
tests/test_user_job.py as a trial's workload (`workload.function: user_jobs:NAME`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from tuner import Tuned


def linear(samples: int = 64, batch_size: int = 8, epochs: int = 1, every: int = 1,
           report: bool = True, after: str = "", dict_batches: bool = False) -> None:
    """A linear classifier over `epochs` passes of `samples` random rows; writes `after` (a
    path) if its code after the loop runs."""
    tuned = Tuned.load()
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(samples, 16, generator=generator)
    labels = (features[:, 0] > 0).long()
    model = nn.Linear(16, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = tuned.model(model, optimizer)
    if dict_batches:
        rows = [{"x": features[i], "y": labels[i]} for i in range(samples)]
        loader = tuned.loader(rows, batch_size=batch_size)
    else:
        loader = tuned.loader(TensorDataset(features, labels), batch_size=batch_size)
    for _ in range(epochs):
        for batch in tuned.steps(loader, every=every):
            batch = tuned.to_device(batch)
            x, y = (batch["x"], batch["y"]) if dict_batches else batch
            with tuned.autocast():
                loss = nn.functional.cross_entropy(model(x).float(), y)
            tuned.backward(loss)
            tuned.step(optimizer)
            if report:
                tuned.report(loss=loss)
    if after:
        Path(after).write_text("the loop ended", encoding="utf-8")


def unmarked() -> None:
    """Loads its config but never marks a step."""
    Tuned.load()


def failing(after_steps: int = 2) -> None:
    """Raises its own error inside the loop."""
    tuned = Tuned.load()
    for index, _ in enumerate(tuned.steps(range(100))):
        if index == after_steps:
            raise RuntimeError("the job's own bug")
