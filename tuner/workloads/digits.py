"""A real-data inference workload: a small CNN on scikit-learn's handwritten digits.

The data ships inside scikit-learn (nothing is downloaded). The model is trained once from a
fixed seed on a fixed split and its weights cached (under an flock, so trials that start at
once train it once); every trial then loads the same weights, and quality is top-1 accuracy on
the held-out split, so the guard compares a candidate with the fp32 eager reference on real
labels.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from tuner.private import NotPrivate, private_folder
from tuner.workloads.base import InferWorkload

CACHE_ENV = "TUNER_CACHE_DIR"  # set by the search: the study's working folder
TRAIN_SAMPLES = 1200  # of 1797; the rest is the held-out split


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(digits.target)


@dataclass
class DigitsCNN(InferWorkload):
    name: str = "digits_cnn"
    width: int = 32
    hidden: int = 256
    epochs: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        images, labels = _digits()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        self.train_x, self.train_y = images[order[:TRAIN_SAMPLES]], labels[order[:TRAIN_SAMPLES]]
        self.test_x, self.test_y = images[order[TRAIN_SAMPLES:]], labels[order[TRAIN_SAMPLES:]]

    def _architecture(self) -> nn.Module:
        w = self.width
        return nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * w * 16, self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, 10),
        )

    def _weights_path(self) -> Path:
        recipe = f"digits-v1-{self.width}-{self.hidden}-{self.epochs}-{self.seed}"
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
        folder = Path(os.environ.get(CACHE_ENV) or _private_cache())
        return folder / f"digits_cnn-{digest}.pt"

    def _train(self) -> nn.Module:
        torch.manual_seed(self.seed)
        model = self._architecture()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(self.epochs):
            for start in range(0, TRAIN_SAMPLES, 64):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(self.train_x[start:start + 64]),
                                                   self.train_y[start:start + 64])
                loss.backward()
                optimizer.step()
        return model

    def build_model(self) -> nn.Module:
        """The trained model: loaded from the cache, or trained once and cached."""
        path = self._weights_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.is_file():
                partial = path.with_suffix(f".{os.getpid()}.partial")
                torch.save(self._train().state_dict(), partial)
                partial.replace(path)
        model = self._architecture()
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        """Held-out digits, repeated to `num_samples` (real inputs for the timed batches)."""
        repeats = -(-num_samples // len(self.test_x))
        return TensorDataset(self.test_x.repeat(repeats, 1, 1, 1)[:num_samples],
                             self.test_y.repeat(repeats)[:num_samples])

    def example_input(self, batch_size: int) -> torch.Tensor:
        return self.test_x[:batch_size]

    def calibration_inputs(self) -> list[torch.Tensor]:
        return list(self.train_x[:256].split(32))

    def quality(self, predict: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """Top-1 accuracy on the held-out split."""
        outputs = predict(self.test_x)
        return float((outputs.float().argmax(1) == self.test_y).float().mean())


def digits_cnn(**options: Any) -> DigitsCNN:
    """Inference of a small CNN on scikit-learn's digits (real data, trained once, cached)."""
    return DigitsCNN(**options)


def _private_cache() -> Path:
    """Outside a trial (no TUNER_CACHE_DIR): a cache of this user's own, 0700, so no other
    local user can replace the trained weights it holds."""
    try:
        folder = private_folder("tuner") / "cache"
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder
    except NotPrivate as error:
        raise RuntimeError(f"{error}; or set {CACHE_ENV} to a folder of your own") from None
