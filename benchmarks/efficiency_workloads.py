"""Workloads the tuner was never tuned on, for benchmarks/search_efficiency.py (issue 23):
neither is vision, and each has its own shape of cost.

- `text_classifier`: a small Transformer encoder over token sequences (embedding, 2 layers of
  self-attention and feed-forward, mean pooling): matmul-bound, so dtype and threads matter.
- `sequence_regressor`: a GRU over a multivariate time series with an MSE loss:
  recurrent, many small matmuls one time step after another, so batch size and per-call
  overhead matter more than peak FLOP/s.

Both make their data on the fly from a seed (no download), with labels that are a fixed
function of the inputs so that training moves the loss. Named in a space as
`efficiency_workloads:text_classifier` with this folder on PYTHONPATH (the benchmark sets it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from tuner.workloads.base import TrainWorkload


class Tokens(Dataset):
    """Random token sequences; the class is the most frequent token's bucket."""

    def __init__(self, num_samples: int, seq_len: int, vocab: int, num_classes: int,
                 seed: int | None) -> None:
        self.num_samples, self.seq_len, self.vocab = num_samples, seq_len, vocab
        self.num_classes, self.seed = num_classes, seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        generator = (torch.Generator().manual_seed(self.seed * 1_000_003 + index)
                     if self.seed is not None else None)
        tokens = torch.randint(0, self.vocab, (self.seq_len,), generator=generator)
        return tokens, int(tokens[: self.seq_len // 4].sum()) % self.num_classes


class Encoder(nn.Module):
    def __init__(self, vocab: int, width: int, heads: int, layers: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width,
                                           dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(dim=1))


@dataclass
class TextClassifier(TrainWorkload):
    seq_len: int = 32
    vocab: int = 2000
    width: int = 64
    heads: int = 4
    layers: int = 2
    num_classes: int = 4

    def build_model(self) -> nn.Module:
        return Encoder(self.vocab, self.width, self.heads, self.layers, self.num_classes)

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        return Tokens(num_samples, self.seq_len, self.vocab, self.num_classes, seed)


class Series(Dataset):
    """Random multivariate series; the target is a fixed linear function of the last steps."""

    def __init__(self, num_samples: int, steps: int, features: int, seed: int | None) -> None:
        self.num_samples, self.steps, self.features, self.seed = (num_samples, steps, features,
                                                                  seed)
        self.weights = torch.linspace(-1.0, 1.0, features)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = (torch.Generator().manual_seed(self.seed * 1_000_003 + index)
                     if self.seed is not None else None)
        series = torch.randn(self.steps, self.features, generator=generator)
        return series, (series[-4:] @ self.weights).mean().reshape(1)


class Recurrent(nn.Module):
    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        output, _ = self.gru(series)
        return self.head(output[:, -1])


@dataclass
class SequenceRegressor(TrainWorkload):
    steps: int = 24
    features: int = 8
    hidden: int = 64
    layers: int = 1

    def build_model(self) -> nn.Module:
        return Recurrent(self.features, self.hidden, self.layers)

    def dataset(self, num_samples: int, seed: int | None = None) -> Dataset:
        return Series(num_samples, self.steps, self.features, seed)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(output.float(), target.float())


def text_classifier(**options: object) -> TextClassifier:
    return TextClassifier(name="text_classifier", **options)  # type: ignore[arg-type]


def sequence_regressor(**options: object) -> SequenceRegressor:
    return SequenceRegressor(name="sequence_regressor", **options)  # type: ignore[arg-type]
