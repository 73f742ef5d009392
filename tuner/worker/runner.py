"""Runs a workload the way a `RunSetup` says: device, layout, autocast (with gradient scaling
for fp16 on a GPU), GPU math flags, compile, loader and host-to-device copies.

Used twice in a trial process: for the timed steps and for the guard's fixed experiment, so the
guard checks exactly the numerics that were timed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

import torch
from torch.utils.data import DataLoader

from tuner.knobs.base import RunSetup


class Run(Protocol):
    """What the measurement needs of a run, trained or inferred: batches to step through, one
    step, a device sync before the clock is read, and whether the model was compiled."""

    scenario: ClassVar[str]  # "train" or "infer"
    compiled: bool

    def __init__(self, workload: Any, setup: RunSetup, num_batches: int, batch_size: int,
                 data_seed: int | None = None) -> None: ...

    def batches(self) -> Iterator[Any]: ...

    def step(self, batch: Any) -> Any: ...

    def synchronize(self) -> None: ...


class TrainRun:
    """A model, its optimizer and a data loader, ready to step."""

    scenario: ClassVar[str] = "train"

    def __init__(self, workload: Any, setup: RunSetup, num_batches: int, batch_size: int,
                 data_seed: int | None = None) -> None:
        self.workload = workload
        self.setup = setup
        configure_backends(setup)
        model = workload.build_model().to(setup.device)
        if setup.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        self.optimizer = workload.optimizer(model)
        # fp16 gradients underflow: scale the loss up, unscale before the step (skipped on inf)
        self.scaler = (torch.amp.GradScaler(device_type(setup))
                       if setup.grad_scaling else None)
        if setup.ipex_optimize:  # the knob checked IPEX matches this torch before we got here
            import intel_extension_for_pytorch as ipex

            dtype = torch.bfloat16 if setup.autocast_dtype == "bfloat16" else None
            model, self.optimizer = ipex.optimize(model, optimizer=self.optimizer, dtype=dtype)
        register_compile_backend(setup)
        self.model = model
        self.compiled = setup.compile_options is not None
        self.forward = (torch.compile(model, **setup.compile_options)
                        if setup.compile_options is not None else model)
        dataset = workload.dataset(num_batches * batch_size, seed=data_seed)
        self.loader = make_loader(dataset, setup, batch_size)
        self.loss_weight = float(getattr(workload, "loss_weight", 1.0))

    def batches(self) -> Iterator[Any]:
        return iter(self.loader)

    def step(self, batch: Any) -> torch.Tensor:
        """One optimizer step; returns the (unscaled) loss, detached."""
        inputs, targets = batch
        inputs = inputs.to(self.setup.device, non_blocking=self.setup.non_blocking)
        targets = targets.to(self.setup.device, non_blocking=self.setup.non_blocking)
        if self.setup.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(self.setup):
            loss = self.workload.loss(self.forward(inputs), targets)
        self.optimizer.zero_grad(set_to_none=True)
        weighted = loss * self.loss_weight if self.loss_weight != 1.0 else loss
        if self.scaler is None:
            weighted.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(weighted).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach()

    def synchronize(self) -> None:
        """Wait for the device: a GPU step returns before its kernels finish."""
        synchronize(self.setup)


class InferRun:
    """An inference workload's model in eval mode, quantized and compiled as the setup says,
    and a loader of real inputs; a step is one batch's forward under inference_mode."""

    scenario: ClassVar[str] = "infer"

    def __init__(self, workload: Any, setup: RunSetup, num_batches: int, batch_size: int,
                 data_seed: int | None = None) -> None:
        from tuner.worker.quantization import quantize

        self.workload = workload
        self.setup = setup
        configure_backends(setup)
        model = workload.build_model().to(setup.device).eval()
        dataset = workload.dataset(num_batches * batch_size, seed=data_seed)
        self.loader = make_loader(dataset, setup, batch_size)
        if setup.backend == "onnxruntime":
            self.compiled = False
            self.forward = _onnxruntime_forward(model, setup, workload.example_input(batch_size))
            return
        if setup.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model = quantize(model, setup.quantize, workload.example_input(batch_size),
                         workload.calibration_inputs())
        if setup.ipex_optimize:  # the knob checked IPEX matches this torch before we got here
            import intel_extension_for_pytorch as ipex

            dtype = torch.bfloat16 if setup.autocast_dtype == "bfloat16" else None
            model = ipex.optimize(model, dtype=dtype)
        register_compile_backend(setup)
        options = setup.compile_options
        if setup.quantize == "static_int8":
            # PT2E's int8 kernels come from inductor's lowering (weights prepacked by freezing).
            # Static shapes: with a dynamic batch, torch 2.15's frozen int8 conv lowering fails
            # a stride assertion; each batch size compiles once instead.
            options = {"backend": "inductor", **(options or {}), "dynamic": False}
        if options is not None and options.get("backend", "inductor") == "inductor":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # weights are constants at inference: fold them
        self.model = model
        self.compiled = options is not None
        self.forward = torch.compile(model, **options) if options is not None else model

    def batches(self) -> Iterator[Any]:
        return iter(self.loader)

    def synchronize(self) -> None:
        synchronize(self.setup)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(self.setup.device, non_blocking=self.setup.non_blocking)
        if self.setup.backend == "onnxruntime":
            return self.forward(inputs)
        if self.setup.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.setup):
            return self.forward(inputs)

    def step(self, batch: Any) -> torch.Tensor:
        return self.predict(batch[0])


def device_type(setup: RunSetup) -> str:
    return "cuda" if setup.device.startswith("cuda") else "cpu"


def configure_backends(setup: RunSetup) -> None:
    """Process-wide GPU math flags (a fresh process per trial: nothing leaks to the next)."""
    if device_type(setup) != "cuda":
        return
    if setup.tf32 is not None:
        precision = "tf32" if setup.tf32 else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision  # type: ignore[attr-defined]
    torch.backends.cudnn.benchmark = setup.cudnn_benchmark


def make_loader(dataset: Any, setup: RunSetup, batch_size: int) -> DataLoader:
    """The DataLoader as the setup says; worker-only options only with workers (torch refuses
    them otherwise), pinning only for a GPU (there is nothing to pin for on a CPU run)."""
    options: dict[str, Any] = {}
    if setup.num_workers > 0:
        options["persistent_workers"] = setup.persistent_workers
        if setup.prefetch_factor is not None:
            options["prefetch_factor"] = setup.prefetch_factor
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True,
                      num_workers=setup.num_workers,
                      pin_memory=setup.pin_memory and device_type(setup) == "cuda", **options)


def synchronize(setup: RunSetup) -> None:
    if device_type(setup) == "cuda":
        torch.cuda.synchronize()


def register_compile_backend(setup: RunSetup) -> None:
    """torch.compile(backend="ipex") exists once IPEX is imported."""
    if (setup.compile_options or {}).get("backend") == "ipex":
        import intel_extension_for_pytorch  # noqa: F401


def autocast(setup: RunSetup) -> contextlib.AbstractContextManager[Any]:
    if setup.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type(setup), dtype=getattr(torch, setup.autocast_dtype))


def _onnxruntime_forward(model: torch.nn.Module, setup: RunSetup,
                         example: torch.Tensor) -> Any:
    """The model exported to ONNX (dynamo exporter, dynamic batch) and run by an ONNX Runtime
    session with the trial's thread counts (0: ORT's default)."""
    import os
    import tempfile

    import onnxruntime as ort

    from tuner.knobs.base import UnsupportedChoice

    clashes = {name: value for name, value in (
        ("quantize", setup.quantize), ("compile", (setup.compile_options or {}).get("backend")),
        ("dtype", setup.autocast_dtype), ("ipex", "optimize" if setup.ipex_optimize else None),
    ) if value not in (None, "none")}
    if clashes:
        name, value = next(iter(clashes.items()))
        shown = {"bfloat16": "bf16", "float16": "fp16"}.get(value, value)
        raise UnsupportedChoice({"backend": "onnxruntime", name: shown}, (
            f"backend=onnxruntime with {name}={shown}: torch-side numerics do not apply to an "
            f"ONNX Runtime session"))
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                verbose=False)
    folder = tempfile.mkdtemp(prefix="tuner-onnx-")
    path = os.path.join(folder, "model.onnx")
    if program is None:  # dynamo=True always returns one; the type allows None
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = setup.intra_op_threads or 0
    options.inter_op_num_threads = setup.interop_threads or 0
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        array = inputs.detach().cpu().contiguous().numpy()
        return torch.from_numpy(session.run(None, {input_name: array})[0])

    return forward
