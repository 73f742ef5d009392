"""A found config in a framework's own words: Hugging Face `TrainingArguments` fields and
Lightning `Trainer` arguments (with the DataLoader arguments a LightningDataModule takes).

Plain data both ways, so `tuner export --to hf|lightning` prints it without torch, and a job
passes it straight on: `TrainingArguments(output_dir=..., **hf_arguments(knobs).arguments)`.
Every knob of the config is either mapped or listed in `elsewhere` with where it goes instead:
a knob silently dropped would lose what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# where the process-level knobs go: the environment a job starts with
_LAUNCH = "process environment: start the job with `tuner launch BEST.yaml -- ...`"
_INFERENCE = "inference only: not a training argument"


@dataclass
class FrameworkArguments:
    """`arguments` for the framework's own class; `loader` for a DataLoader the job builds
    itself (Lightning); `elsewhere`: knob=value -> where it goes instead."""

    framework: str
    arguments: dict[str, Any] = field(default_factory=dict)
    loader: dict[str, Any] = field(default_factory=dict)
    elsewhere: dict[str, str] = field(default_factory=dict)


def _loader(knobs: dict[str, Any]) -> dict[str, Any]:
    """DataLoader arguments of the loader knobs (worker-only ones only with workers: torch
    refuses them otherwise)."""
    workers = int(knobs.get("num_workers", 0))
    loader: dict[str, Any] = {}
    if "batch_size" in knobs:
        loader["batch_size"] = int(knobs["batch_size"])
    if "num_workers" in knobs:
        loader["num_workers"] = workers
    if workers and "prefetch_factor" in knobs:
        loader["prefetch_factor"] = int(knobs["prefetch_factor"])
    if workers and "persistent_workers" in knobs:
        loader["persistent_workers"] = knobs["persistent_workers"] == "on"
    if "pin_memory" in knobs:
        loader["pin_memory"] = knobs["pin_memory"] == "on" and knobs.get("device") == "cuda"
    return loader


def _common_elsewhere(knobs: dict[str, Any], result: FrameworkArguments) -> None:
    """Knobs no framework argument carries, and where each goes."""
    notes = {
        "threads": _LAUNCH, "interop_threads": "torch.set_num_interop_threads(N) first thing "
        "in the job (or tuner.Tuned.load())", "allocator": _LAUNCH, "omp_runtime": _LAUNCH,
        "affinity": _LAUNCH, "numa": _LAUNCH,
        "memory_format": "model.to(memory_format=torch.channels_last) and 4-D inputs likewise "
        "(tuner.Tuned.model / to_device do both)",
        "non_blocking": "the framework moves batches itself; no argument for it",
        "cudnn_benchmark": "torch.backends.cudnn.benchmark = True before training",
        "ipex": "ipex.optimize(model, optimizer=optimizer) before training "
        "(tuner.Tuned.model does it)",
        "quantize": _INFERENCE, "backend": _INFERENCE,
    }
    defaults = {"threads": "default", "interop_threads": "default", "allocator": "default",
                "omp_runtime": "gomp", "affinity": "none", "numa": "none",
                "memory_format": "contiguous", "non_blocking": "off", "cudnn_benchmark": "off",
                "ipex": "none", "quantize": "none", "backend": "torch"}
    for name, where in notes.items():
        if name in knobs and knobs[name] != defaults[name]:
            result.elsewhere[f"{name}={knobs[name]}"] = where


def hf_arguments(knobs: dict[str, Any]) -> FrameworkArguments:
    """`transformers.TrainingArguments` fields (transformers 5) for the config's knobs."""
    result = FrameworkArguments("hf")
    names = {"batch_size": "per_device_train_batch_size", "num_workers": "dataloader_num_workers",
             "prefetch_factor": "dataloader_prefetch_factor",
             "persistent_workers": "dataloader_persistent_workers",
             "pin_memory": "dataloader_pin_memory"}
    for knob, value in _loader(knobs).items():
        result.arguments[names[knob]] = value
    cuda = knobs.get("device", "cpu") == "cuda"
    result.arguments["use_cpu"] = not cuda
    dtype = knobs.get("dtype", "fp32")
    result.arguments["bf16"] = dtype == "bf16"
    result.arguments["fp16"] = dtype == "fp16"  # with its gradient scaler, as the trial had
    if cuda and knobs.get("tf32", "default") != "default":
        result.arguments["tf32"] = knobs["tf32"] == "on"
    compiler = knobs.get("compile", "none")
    result.arguments["torch_compile"] = compiler != "none"
    if compiler != "none":
        result.arguments["torch_compile_backend"] = compiler
        if knobs.get("compile_mode", "default") != "default":
            result.arguments["torch_compile_mode"] = knobs["compile_mode"]
    _common_elsewhere(knobs, result)
    return result


def lightning_arguments(knobs: dict[str, Any]) -> FrameworkArguments:
    """`lightning.Trainer` arguments, and the DataLoader arguments for the job's DataModule."""
    result = FrameworkArguments("lightning")
    cuda = knobs.get("device", "cpu") == "cuda"
    result.arguments["accelerator"] = "gpu" if cuda else "cpu"
    result.arguments["devices"] = 1
    result.arguments["precision"] = {"bf16": "bf16-mixed", "fp16": "16-mixed"}.get(
        knobs.get("dtype", "fp32"), "32-true")
    result.loader = _loader(knobs)
    compiler = knobs.get("compile", "none")
    if compiler != "none":
        mode = knobs.get("compile_mode", "default")
        result.elsewhere[f"compile={compiler}"] = (
            f"no Trainer argument: model = torch.compile(model, backend={compiler!r}"
            + (f", mode={mode!r}" if mode != "default" else "") + ") before trainer.fit")
    if cuda and knobs.get("tf32", "default") != "default":
        result.elsewhere[f"tf32={knobs['tf32']}"] = (
            "torch.set_float32_matmul_precision('high' if on else 'highest') before fit")
    _common_elsewhere(knobs, result)
    return result


FRAMEWORKS = {"hf": hf_arguments, "lightning": lightning_arguments}


def export_lines(result: FrameworkArguments) -> list[str]:
    """YAML a job loads and passes on (comments say how), then what it must apply itself."""
    import yaml

    if result.framework == "hf":
        lines = ["# transformers.TrainingArguments(output_dir=..., **these)",
                 *yaml.safe_dump(result.arguments, sort_keys=False).splitlines()]
    else:
        lines = ["# lightning.Trainer(**trainer); DataLoader(dataset, **dataloader) in your "
                 "DataModule",
                 *yaml.safe_dump({"trainer": result.arguments, "dataloader": result.loader},
                                 sort_keys=False).splitlines()]
    if result.elsewhere:
        lines.append("# no argument for these; apply them as said:")
        lines += [f"#   {knob}: {where}" for knob, where in result.elsewhere.items()]
    return lines
