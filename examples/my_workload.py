"""A user workload for `tuner`: a small MLP on scikit-learn-free synthetic tabular data.

Run it with the space beside this file:

    PYTHONPATH=examples tuner search --space examples/custom_workload.yaml

The factory named in the space (`my_workload:make`) receives `workload.options` as keyword
arguments and returns an object with build_model / dataset / loss / optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from tuner.workloads.base import TrainWorkload


class Tabular(Dataset):
    """Rows of random features; the label is a fixed function of them, so there is signal."""

    def __init__(self, num_samples: int, features: int, seed: int | None) -> None:
        generator = torch.Generator().manual_seed(1234 if seed is None else seed)
        self.x = torch.randn(num_samples, features, generator=generator)
        self.y = (self.x[:, : features // 2].sum(dim=1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


@dataclass
class MLP(TrainWorkload):
    features: int = 64
    hidden: int = 256

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(self.features, self.hidden), nn.ReLU(),
                             nn.Linear(self.hidden, self.hidden), nn.ReLU(),
                             nn.Linear(self.hidden, 2))

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        return Tabular(num_samples, self.features, seed)


def make(**options: object) -> MLP:
    return MLP(name="mlp", **options)  # type: ignore[arg-type]
