"""Small jobs written as users write them (their own loop, marked by `tuned.steps`), run by
tests/test_user_job.py as a trial's workload (`workload.function: user_jobs:NAME`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from tuner import Tuned


def linear(samples: int = 64, batch_size: int = 8, epochs: int = 1, every: int = 1,
           report: bool = True, after: str = "", dict_batches: bool = False) -> None:
    """A linear classifier over `epochs` passes of `samples` random rows; writes `after` (a
    path) if its code after the loop runs."""
    tuned = Tuned.load()
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(samples, 16, generator=generator)
    labels = (features[:, 0] > 0).long()
    model = nn.Linear(16, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = tuned.model(model, optimizer)
    if dict_batches:
        rows = [{"x": features[i], "y": labels[i]} for i in range(samples)]
        loader = tuned.loader(rows, batch_size=batch_size)
    else:
        loader = tuned.loader(TensorDataset(features, labels), batch_size=batch_size)
    for _ in range(epochs):
        for batch in tuned.steps(loader, every=every):
            batch = tuned.to_device(batch)
            x, y = (batch["x"], batch["y"]) if dict_batches else batch
            with tuned.autocast():
                loss = nn.functional.cross_entropy(model(x).float(), y)
            tuned.backward(loss)
            tuned.step(optimizer)
            if report:
                tuned.report(loss=loss)
    if after:
        Path(after).write_text("the loop ended", encoding="utf-8")


def unmarked() -> None:
    """Loads its config but never marks a step."""
    Tuned.load()


def failing(after_steps: int = 2) -> None:
    """Raises its own error inside the loop."""
    tuned = Tuned.load()
    for index, _ in enumerate(tuned.steps(range(100))):
        if index == after_steps:
            raise RuntimeError("the job's own bug")


def hf_bert(output_dir: str) -> None:
    """A small BERT (random init) trained by the transformers Trainer, its steps marked by the
    tuner's callback."""
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from tuner.frameworks import hf_arguments
    from tuner.worker.callbacks import hf_callback

    tuned = Tuned.load()
    model = BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=2))
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(1, 100, (16,), generator=generator),
             "labels": torch.tensor(i % 2)} for i in range(512)]
    arguments = TrainingArguments(output_dir=output_dir, num_train_epochs=100, report_to=[],
                                  save_strategy="no", logging_strategy="no",
                                  disable_tqdm=True, **hf_arguments(tuned.knobs).arguments)
    Trainer(model=model, args=arguments, train_dataset=rows,
            callbacks=[hf_callback(tuned)]).train()


def lightning_linear(root: str) -> None:
    """A LightningModule trained by a lightning Trainer, its steps marked by the tuner's
    callback."""
    import lightning
    from torch.utils.data import DataLoader

    from tuner.frameworks import lightning_arguments
    from tuner.worker.callbacks import lightning_callback

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(16, 2)

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self.layer(batch[0]).float(), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    tuned = Tuned.load()
    exported = lightning_arguments(tuned.knobs)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(512, 16, generator=generator),
                         torch.randint(0, 2, (512,), generator=generator))
    trainer = lightning.Trainer(max_epochs=100, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                default_root_dir=root, callbacks=[lightning_callback(tuned)],
                                **exported.arguments)
    trainer.fit(Classifier(), DataLoader(data, **exported.loader))


def own_loader(batch_size: int = 5) -> None:
    """Builds its DataLoader itself: the trial's batch_size knob cannot act on it."""
    tuned = Tuned.load()
    data = TensorDataset(torch.randn(4096, 4))
    for (rows,) in tuned.steps(torch.utils.data.DataLoader(data, batch_size=batch_size)):
        tuned.report(loss=rows.sum())
