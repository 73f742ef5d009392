"""A Transformer text classifier, written the way such jobs are written: dict batches padded
per batch with an attention mask, a model that returns its own loss, AdamW, gradient
accumulation and clipping. Four calls of `tuned` make it tunable and let it run with a found
config; nothing else in the loop changes.

    python examples/jobs/text_classifier.py                       # as it is, untouched
    PYTHONPATH=examples tuner search --space examples/jobs/text_classifier.yaml
    tuner launch tuner-runs/best/text_classifier.yaml -- python examples/jobs/text_classifier.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import Dataset

from tuner import Tuned

PAD = 0


class Reviews(Dataset):
    """Token sequences of 16 to 64 tokens; the label says whether token 7 outnumbers token 9
    (a signal the model can learn). Item i is the same in every process."""

    def __init__(self, size: int, vocab: int) -> None:
        self.size, self.vocab = size, vocab

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        length = int(torch.randint(16, 65, (1,), generator=generator))
        tokens = torch.randint(1, self.vocab, (length,), generator=generator)
        label = int((tokens == 7).sum() > (tokens == 9).sum())
        return {"input_ids": tokens, "labels": torch.tensor(label)}


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch; the mask marks real tokens."""
    longest = max(len(sample["input_ids"]) for sample in samples)
    input_ids = torch.full((len(samples), longest), PAD, dtype=torch.long)
    for row, sample in enumerate(samples):
        input_ids[row, :len(sample["input_ids"])] = sample["input_ids"]
    return {"input_ids": input_ids, "attention_mask": (input_ids != PAD).long(),
            "labels": torch.stack([sample["labels"] for sample in samples])}


class Classifier(nn.Module):
    """Embeddings, a Transformer encoder, mean pooling over real tokens, a linear head."""

    def __init__(self, vocab: int, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.position = nn.Embedding(64, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.encoder(self.embed(input_ids) + self.position(positions),
                              src_key_padding_mask=attention_mask == 0)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.head((hidden * mask).sum(1) / mask.sum(1))
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = nn.functional.cross_entropy(logits.float(), labels)
        return output


def train(epochs: int = 1, samples: int = 4096, vocab: int = 1000, dim: int = 128,
          heads: int = 4, layers: int = 2, batch_size: int = 32, accumulation: int = 2,
          max_grad_norm: float = 1.0, lr: float = 3e-4) -> nn.Module:
    tuned = Tuned.load()  # the trial's config in a search, TUNER_CONFIG under tuner launch
    model = Classifier(vocab, dim, heads, layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model, optimizer = tuned.model(model, optimizer)
    loader = tuned.loader(Reviews(samples, vocab), batch_size=batch_size, shuffle=True,
                          collate_fn=collate, drop_last=True)
    model.train()
    for _ in range(epochs):
        for step, batch in enumerate(tuned.steps(loader, every=accumulation)):
            batch = tuned.to_device(batch)
            with tuned.autocast():
                loss = model(**batch)["loss"] / accumulation
            tuned.backward(loss)
            tuned.report(loss=loss)
            if (step + 1) % accumulation == 0:
                tuned.step(optimizer, max_grad_norm=max_grad_norm)
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=4096)
    arguments = parser.parse_args()
    train(epochs=arguments.epochs, samples=arguments.samples)
