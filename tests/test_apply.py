"""The in-process half of a config, applied to the user's own objects by `Tuned`: the same code
runs with a config and without one (then nothing changes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from tuner.errors import UserError
from tuner.worker.apply import Tuned

CONFIG = {"batch_size": 8, "num_workers": 1, "prefetch_factor": 2, "persistent_workers": "on",
          "dtype": "bf16", "memory_format": "channels_last", "threads": 1}


@pytest.fixture(autouse=True)
def threads_restored() -> Iterator[None]:
    """`Tuned` sets torch's thread count for the process: give later tests theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class Pairs(torch.utils.data.Dataset):
    """Dict samples, as a tokenizer's dataset yields them."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixels": torch.rand(3, 8, 8), "mask": torch.ones(4, dtype=torch.long),
                "label": torch.tensor(index % 2)}


def _collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4 * 6 * 6, 2)

    def forward(self, pixels: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(pixels).flatten(1))


def test_without_a_config_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNER_CONFIG", raising=False)
    tuned = Tuned.load()
    model = Net()
    assert tuned.model(model) is model
    assert not model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    loader = tuned.loader(Pairs(), batch_size=5, collate_fn=_collate, shuffle=True)
    assert (loader.batch_size, loader.num_workers, loader.collate_fn) == (5, 0, _collate)
    batch = next(iter(loader))
    assert tuned.to_device(batch)["pixels"] is batch["pixels"]  # already there
    with tuned.autocast():
        assert model(**batch).dtype == torch.float32


def test_a_config_applies_to_the_users_own_objects(tmp_path: Path) -> None:
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({"knobs": CONFIG}), encoding="utf-8")
    tuned = Tuned.load(path)
    assert torch.get_num_threads() == 1
    model = tuned.model(Net())
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    loader = tuned.loader(Pairs(), batch_size=5, collate_fn=_collate, shuffle=True)
    assert (loader.batch_size, loader.num_workers, loader.prefetch_factor,
            loader.persistent_workers, loader.collate_fn) == (8, 1, 2, True, _collate)
    batch = tuned.to_device(next(iter(loader)))
    assert batch["pixels"].is_contiguous(memory_format=torch.channels_last)
    assert batch["mask"].dtype == torch.long and batch["mask"].is_contiguous()
    with tuned.autocast():
        assert model(**batch).dtype == torch.bfloat16


def test_nested_batches_of_any_shape_are_moved() -> None:
    Pair = namedtuple("Pair", "images labels")
    tuned = Tuned({"memory_format": "channels_last"})
    batch = {"pair": Pair(torch.rand(2, 3, 4, 4), torch.zeros(2)),
             "list": [torch.rand(2, 3, 4, 4), "a caption"], "count": 3}
    moved = tuned.to_device(batch)
    assert isinstance(moved["pair"], Pair) and moved["list"][1] == "a caption"
    assert moved["pair"].images.is_contiguous(memory_format=torch.channels_last)
    assert moved["list"][0].is_contiguous(memory_format=torch.channels_last)
    assert moved["count"] == 3


def test_accumulation_clipping_and_two_optimizers() -> None:
    """A GAN-shaped step: two optimizers, two backward passes accumulated, clipped, stepped
    once; gradients cleared after."""
    tuned = Tuned({"dtype": "bf16"})
    generator, critic = nn.Linear(4, 4), nn.Linear(4, 1)
    optimizers = (torch.optim.AdamW(generator.parameters(), lr=0.1),
                  torch.optim.SGD(critic.parameters(), lr=0.1))
    before = [p.detach().clone() for p in (*generator.parameters(), *critic.parameters())]
    for _ in range(2):  # gradient accumulation: two micro-batches, one step
        with tuned.autocast():
            loss = critic(generator(torch.rand(8, 4))).float().pow(2).mean()
        tuned.backward(loss)
    tuned.step(*optimizers, max_grad_norm=0.5)
    after = [p.detach() for p in (*generator.parameters(), *critic.parameters())]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(p.grad is None for p in (*generator.parameters(), *critic.parameters()))


def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "best.yaml"
    path.write_text("knobs: {dtype: fp64}\n", encoding="utf-8")
    with pytest.raises(UserError,
                       match=r"best.yaml: knobs.dtype: (did you mean fp16\? )?must be one of"):
        Tuned.load(path)
    with pytest.raises(UserError, match=r"config: knobs.'batch_sise': unknown knob"):
        Tuned({"batch_sise": 8})


def test_a_job_under_tuner_launch_reads_its_config(tmp_path: Path) -> None:
    """`tuner launch` hands the in-process half to the job through TUNER_CONFIG."""
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({"knobs": CONFIG}), encoding="utf-8")
    job = ("import json, torch; from tuner.worker.apply import Tuned; t = Tuned.load(); "
           "print(json.dumps({'dtype': t.setup.autocast_dtype, 'batch': t.setup.batch_size, "
           "'threads': torch.get_num_threads()}))")
    done = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "launch", str(path), "--",
                           sys.executable, "-c", job], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TUNER_CONFIG": ""}, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"dtype": "bfloat16", "batch": 8, "threads": 1}
