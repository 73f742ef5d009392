"""The training workload protocol and synthetic data.

A user workload is any object with these methods (subclassing `TrainWorkload` is easiest),
returned by a factory named in the space as `package.module:factory`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset


class SyntheticImages(Dataset):
    """Random images generated per item (so loading costs what it costs in the study's loop).

    With `seed`, item i is the same on every call and in every process: the guard's fixed data.
    Labels are index % num_classes, as in the published study.
    """

    def __init__(self, num_samples: int, shape: tuple[int, ...], num_classes: int,
                 seed: int | None = None) -> None:
        self.num_samples = num_samples
        self.shape = shape
        self.num_classes = num_classes
        self.seed = seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.seed is None:
            image = torch.rand(self.shape)
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            image = torch.rand(self.shape, generator=generator)
        return image, index % self.num_classes


@dataclass
class TrainWorkload:
    """Supervised training: build a model, a dataset, a loss and an optimizer.

    `loss_weight` scales the loss before backward (as a multi-task weight would); the reported
    loss is unscaled. Small weights make fp16 gradients underflow without a grad scaler.
    """

    name: str = "workload"
    lr: float = 0.01
    momentum: float = 0.9
    loss_weight: float = 1.0

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target)

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum)


@dataclass
class InferWorkload:
    """Inference: a trained model in eval mode, inputs to time, and a quality metric on real
    labelled data that the accuracy guard compares with the fp32 eager reference.

    `quality(predict)` gets a function from inputs (any number: it runs them in batches of the
    trial's batch size) to model outputs under the candidate's numerics (dtype, layout,
    compile, quantization) and returns a number where higher is better
    (top-1 accuracy, agreement with reference outputs, ...). `calibration_inputs()` feeds
    static quantization.
    """

    name: str = "workload"
    scenario: str = "infer"

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        raise NotImplementedError

    def example_input(self, batch_size: int) -> torch.Tensor:
        raise NotImplementedError

    def calibration_inputs(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def quality(self, predict: Callable[[torch.Tensor], torch.Tensor]) -> float:
        raise NotImplementedError
