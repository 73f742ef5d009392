"""A found config in a framework's own words (tuner.frameworks, `tuner export --to
hf|lightning`), run by the real frameworks: a small BERT from `BertConfig` (random init,
nothing downloaded) trained by the transformers `Trainer`, and a `LightningModule` trained by
a lightning `Trainer`, each with exactly the exported arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tuner.frameworks import hf_arguments, lightning_arguments
from tuner.knobs import REGISTRY

CONFIG = {"device": "cpu", "batch_size": 8, "num_workers": 1, "prefetch_factor": 2,
          "persistent_workers": "on", "pin_memory": "off", "dtype": "bf16",
          "memory_format": "channels_last", "compile": "none", "threads": 1,
          "allocator": "default", "omp_runtime": "gomp", "affinity": "cores"}


def _export(tmp_path: Path, to: str) -> dict:
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({"knobs": CONFIG}), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "export", str(best),
                           "--to", to], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "#   memory_format=channels_last: model.to(memory_format=torch.channels_last)" \
        in done.stdout  # no argument for it: said, not dropped
    return yaml.safe_load(done.stdout)


def test_every_knob_is_mapped_or_said_to_go_elsewhere() -> None:
    """No knob of a config is dropped in silence: a changed value is an argument, or listed
    with where it goes instead."""
    changed = {"device": "cuda", "batch_size": 64, "num_workers": 2, "prefetch_factor": 4,
               "persistent_workers": "on", "pin_memory": "on", "non_blocking": "on",
               "dtype": "fp16", "tf32": "on", "cudnn_benchmark": "on",
               "memory_format": "channels_last", "compile": "inductor",
               "compile_mode": "max-autotune", "threads": 2, "interop_threads": 1,
               "allocator": "tcmalloc", "omp_runtime": "iomp", "affinity": "cores",
               "numa": "node0", "ipex": "optimize", "quantize": "dynamic_int8",
               "backend": "onnxruntime"}
    assert set(changed) == set(REGISTRY)  # a new knob must be added here, and mapped
    hf, lightning = hf_arguments(changed), lightning_arguments(changed)
    said = {key.split("=")[0] for key in hf.elsewhere}
    assert said | {"device", "batch_size", "num_workers", "prefetch_factor",
                   "persistent_workers", "pin_memory", "dtype", "tf32", "compile",
                   "compile_mode"} == set(REGISTRY)
    assert hf.arguments["fp16"] and hf.arguments["tf32"] and not hf.arguments["use_cpu"]
    assert hf.arguments["torch_compile_mode"] == "max-autotune"
    said = {key.split("=")[0] for key in lightning.elsewhere}
    assert said | {"device", "batch_size", "num_workers", "prefetch_factor",
                   "persistent_workers", "pin_memory", "dtype", "compile_mode"} == set(REGISTRY)
    assert lightning.arguments == {"accelerator": "gpu", "devices": 1, "precision": "16-mixed"}
    assert lightning.loader == {"batch_size": 64, "num_workers": 2, "prefetch_factor": 4,
                                "persistent_workers": True, "pin_memory": True}


@pytest.mark.slow
def test_a_small_bert_trains_with_the_exported_training_arguments(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    exported = _export(tmp_path, "hf")
    assert exported["per_device_train_batch_size"] == 8 and exported["bf16"] is True
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=2))
    rows = [{"input_ids": torch.randint(1, 100, (16,)), "attention_mask": torch.ones(16,
            dtype=torch.long), "labels": torch.tensor(i % 2)} for i in range(64)]
    arguments = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3, report_to=[],
                                  save_strategy="no", logging_strategy="no", **exported)
    trainer = Trainer(model=model, args=arguments, train_dataset=rows)
    trainer.train()
    assert trainer.state.global_step == 3
    assert trainer.accelerator.mixed_precision == "bf16"  # bf16 autocast, as measured
    loader = trainer.get_train_dataloader()
    assert loader.num_workers == 1 and loader.prefetch_factor == 2
    assert loader.persistent_workers


@pytest.mark.slow
def test_a_lightning_module_trains_with_the_exported_trainer_arguments(tmp_path: Path) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    exported = _export(tmp_path, "lightning")

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(16, 2)
            self.dtypes: list[torch.dtype] = []

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            logits = self.layer(batch[0])
            self.dtypes.append(logits.dtype)
            return torch.nn.functional.cross_entropy(logits.float(), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = TensorDataset(torch.randn(64, 16), torch.randint(0, 2, (64,)))
    module = Classifier()
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), **exported["trainer"])
    trainer.fit(module, DataLoader(data, **exported["dataloader"]))
    assert trainer.global_step == 3
    assert module.dtypes == [torch.bfloat16] * 3  # bf16-mixed autocast, as measured
