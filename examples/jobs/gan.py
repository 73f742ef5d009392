"""A DCGAN-style GAN on 32x32 images, written the way GAN loops are written: two models, two
optimizers, the discriminator's step then the generator's in every iteration. `tuned` prepares
both models (each with its optimizer), the loader, autocast and the two steps.

    python examples/jobs/gan.py                                   # as it is, untouched
    PYTHONPATH=examples tuner search --space examples/jobs/gan.yaml
    tuner launch tuner-runs/best/gan.yaml -- python examples/jobs/gan.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import Dataset

from tuner import Tuned

LATENT = 64


class Blobs(Dataset):
    """Images of one bright Gaussian blob at a random place: something for the GAN to learn.
    Item i is the same in every process."""

    def __init__(self, size: int) -> None:
        self.size = size
        axis = torch.linspace(-1, 1, 32)
        self.y, self.x = torch.meshgrid(axis, axis, indexing="ij")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(index)
        centre = torch.rand(2, generator=generator) * 1.2 - 0.6
        image = torch.exp(-((self.x - centre[0]) ** 2 + (self.y - centre[1]) ** 2) / 0.05)
        return (image * 2 - 1).expand(3, 32, 32).clone()


def generator_model() -> nn.Module:
    def up(inputs: int, outputs: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(inputs, outputs, 4, 2, 1, bias=False),
                nn.BatchNorm2d(outputs), nn.ReLU(True)]

    return nn.Sequential(nn.ConvTranspose2d(LATENT, 256, 4, 1, 0, bias=False),
                         nn.BatchNorm2d(256), nn.ReLU(True), *up(256, 128), *up(128, 64),
                         nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())


def discriminator_model() -> nn.Module:
    def down(inputs: int, outputs: int) -> list[nn.Module]:
        return [nn.Conv2d(inputs, outputs, 4, 2, 1, bias=False), nn.BatchNorm2d(outputs),
                nn.LeakyReLU(0.2, True)]

    return nn.Sequential(nn.Conv2d(3, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
                         *down(64, 128), *down(128, 256), nn.Conv2d(256, 1, 4, 1, 0),
                         nn.Flatten())


def train(epochs: int = 1, samples: int = 4096, batch_size: int = 64,
          lr: float = 2e-4) -> nn.Module:
    tuned = Tuned.load()
    generator, discriminator = generator_model(), discriminator_model()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    generator, opt_g = tuned.model(generator, opt_g)
    discriminator, opt_d = tuned.model(discriminator, opt_d)
    loader = tuned.loader(Blobs(samples), batch_size=batch_size, shuffle=True, drop_last=True)
    criterion = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        for real in tuned.steps(loader):
            real = tuned.to_device(real)
            noise = torch.randn(real.shape[0], LATENT, 1, 1, device=tuned.device)
            ones = torch.ones(real.shape[0], 1, device=tuned.device)
            zeros = torch.zeros_like(ones)
            opt_d.zero_grad(set_to_none=True)
            with tuned.autocast():
                fake = generator(noise)
                d_loss = (criterion(discriminator(real).float(), ones)
                          + criterion(discriminator(fake.detach()).float(), zeros))
            tuned.backward(d_loss)
            tuned.step(opt_d)
            with tuned.autocast():
                g_loss = criterion(discriminator(fake).float(), ones)
            tuned.backward(g_loss)
            tuned.step(opt_g)
            tuned.report(loss=d_loss.detach() + g_loss.detach())
    return generator


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=4096)
    arguments = parser.parse_args()
    train(epochs=arguments.epochs, samples=arguments.samples)
