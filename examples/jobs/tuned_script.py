"""`plain_script.py` made tunable: the same script, a handful of lines changed (the diff is in
docs/your-job.md). Run it as before, under a search, or with a found config:

    python examples/jobs/tuned_script.py --epochs 2
    tuner search --space examples/jobs/tuned_script.yaml
    tuner launch tuner-runs/best/tuned_script.yaml -- python examples/jobs/tuned_script.py"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import TensorDataset

from tuner import Tuned


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a small CNN on synthetic images.")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    tuned = Tuned.load()

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1024, 3, 32, 32, generator=generator)
    labels = (images[:, 0].mean(dim=(1, 2)) > images[:, 1].mean(dim=(1, 2))).long()
    dataset = TensorDataset(images, labels)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64 * 8 * 8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    model, optimizer = tuned.model(model, optimizer)
    loader = tuned.loader(dataset, batch_size=args.batch_size, shuffle=True)

    model.train()
    for epoch in range(args.epochs):
        for images, labels in tuned.steps(loader):
            images, labels = tuned.to_device((images, labels))
            optimizer.zero_grad()
            with tuned.autocast():
                loss = nn.functional.cross_entropy(model(images), labels)
            tuned.backward(loss)
            tuned.step(optimizer)
            tuned.report(loss=loss)
        print(f"epoch {epoch}: loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
