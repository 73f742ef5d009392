"""Image classifiers on synthetic images: the published study's ResNet-50, any torchvision
classifier, and a tiny CNN that trains in milliseconds for tests and quick searches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from tuner.workloads.base import InferWorkload, SyntheticImages, TrainWorkload


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


@dataclass
class VisionInference(InferWorkload):
    """A torchvision classifier's inference, timed on synthetic images (as in the study), its
    quality measured on real images: scikit-learn's digits, resized to the model's input.

    No pretrained weights can be downloaded, so the model is a fixed random initialisation and
    quality is agreement with its own fp32 eager reference: the mean cosine similarity of the
    candidate's outputs to the reference outputs, both centred on the reference's mean output
    (1.0 = identical numerics).
    """

    name: str = "resnet50"
    model_name: str = "resnet50"
    image_size: int = 224
    num_classes: int = 1000
    eval_samples: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        self._reference: torch.Tensor | None = None

    def build_model(self) -> nn.Module:
        import torchvision  # weights=None: nothing is downloaded

        builder = getattr(torchvision.models, self.model_name, None)
        if builder is None:
            raise ValueError(f"torchvision has no model {self.model_name!r}")
        torch.manual_seed(self.seed)  # the same weights in every trial process
        return builder(weights=None, num_classes=self.num_classes).eval()

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        return SyntheticImages(num_samples, (3, self.image_size, self.image_size),
                               self.num_classes, seed)

    def example_input(self, batch_size: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        return torch.rand(batch_size, 3, self.image_size, self.image_size, generator=generator)

    def real_images(self, count: int, offset: int = 0) -> torch.Tensor:
        """Handwritten digits (they ship with scikit-learn), as 3-channel images of the model's
        input size."""
        from sklearn.datasets import load_digits

        images = torch.tensor(load_digits().images[offset:offset + count], dtype=torch.float32)
        images = images.unsqueeze(1).repeat(1, 3, 1, 1) / 16.0
        return nn.functional.interpolate(images, size=(self.image_size, self.image_size),
                                         mode="bilinear", align_corners=False)

    def calibration_inputs(self) -> list[torch.Tensor]:
        return list(self.real_images(32, offset=1000).split(8))  # not the evaluation images

    def quality(self, predict: Callable[[torch.Tensor], torch.Tensor]) -> float:
        images = self.real_images(self.eval_samples)
        if self._reference is None:
            reference_model = self.build_model()
            with torch.inference_mode():
                self._reference = torch.cat([reference_model(b) for b in images.split(16)])
        outputs = predict(images).float()
        # Centred on the reference's mean output: a random network answers every input much
        # alike, and that shared part would make any numerics look nearly identical.
        centre = self._reference.mean(dim=0, keepdim=True)
        similarity = nn.functional.cosine_similarity(outputs - centre, self._reference - centre,
                                                     dim=1)
        return float(similarity.mean())


def torchvision_infer(model: str = "resnet50", **options: Any) -> VisionInference:
    """Inference of any torchvision classifier (e.g. options: {model: resnet50})."""
    return VisionInference(name=model, model_name=model, **options)
