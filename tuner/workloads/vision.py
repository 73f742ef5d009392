"""Image classifiers on synthetic images: the published study's ResNet-50, any torchvision
classifier, and a tiny CNN that trains in milliseconds for tests and quick searches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from tuner.workloads.base import SyntheticImages, TrainWorkload


@dataclass
class ImageClassification(TrainWorkload):
    image_size: int = 224
    num_classes: int = 10
    model_name: str = "resnet50"

    def build_model(self) -> nn.Module:
        import torchvision  # weights=None: nothing is downloaded

        builder = getattr(torchvision.models, self.model_name, None)
        if builder is None:
            raise ValueError(f"torchvision has no model {self.model_name!r}")
        return builder(weights=None, num_classes=self.num_classes)

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        return SyntheticImages(num_samples, (3, self.image_size, self.image_size),
                               self.num_classes, seed)


@dataclass
class TinyCNN(ImageClassification):
    image_size: int = 16
    width: int = 16

    def build_model(self) -> nn.Module:
        w = self.width
        return nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, self.num_classes),
        )


def resnet50(**options: Any) -> ImageClassification:
    """The published CPU study's workload: ResNet-50, 3x224x224 synthetic images, 10 classes."""
    return ImageClassification(name="resnet50", model_name="resnet50", **options)


def torchvision_classifier(model: str = "resnet18", **options: Any) -> ImageClassification:
    """Any torchvision classification model by name, e.g. options: {model: mobilenet_v3_small}."""
    return ImageClassification(name=model, model_name=model, **options)


def tiny_cnn(**options: Any) -> TinyCNN:
    """A two-layer CNN on 16x16 images: real training, milliseconds per step."""
    return TinyCNN(name="tiny_cnn", **options)
