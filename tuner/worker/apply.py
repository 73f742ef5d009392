"""Apply a found config inside your own job, in a few calls around your own loop, and mark
the loop's steps so a search can time the job as it is (docs/your-job.md):

    from tuner import Tuned

    tuned = Tuned.load()                        # TUNER_CONFIG (tuner launch sets it), else none
    model, optimizer = tuned.model(model, optimizer)   # device, channels_last, IPEX, compile
    loader = tuned.loader(dataset, shuffle=True, collate_fn=collate)   # your own arguments
    for batch in tuned.steps(loader):           # a timed step each, in a search's trial
        batch = tuned.to_device(batch)          # tensors nested in dicts, tuples, lists
        with tuned.autocast():
            loss = model(**batch).loss
        tuned.backward(loss)                    # scaled when fp16 needs gradient scaling
        tuned.step(optimizer, max_grad_norm=1.0)   # unscale, clip, step, update
        tuned.report(loss=loss)                 # the accuracy guard's figure, in a search

With no config the same code changes nothing: the model and loader arguments stay yours,
autocast is off, batches stay where they are. The knobs act through the same `RunSetup` and
runner helpers as a trial's own steps, so the applied config is the measured one.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader

from tuner.config_file import CONFIG_ENV, check_knobs, read_config
from tuner.knobs import REGISTRY, RunSetup
from tuner.knobs.base import UnsupportedChoice
from tuner.worker import runner, user_job

T = TypeVar("T")

# loader knob -> DataLoader argument it sets (only when the config holds the knob)
_LOADER_ARGS = {"batch_size": "batch_size", "num_workers": "num_workers",
                "prefetch_factor": "prefetch_factor", "persistent_workers": "persistent_workers",
                "pin_memory": "pin_memory"}


class Tuned:
    """A config applied to your objects. `knobs`: a best config's knobs (or a trial's)."""

    def __init__(self, knobs: Mapping[str, Any] | None = None,
                 session: user_job.Session | None = None) -> None:
        self.session = session
        if session is not None:  # inside a trial: its knobs, already applied to the process
            self.knobs = dict(session.config.knobs)
            self.setup = session.setup
        else:
            self.knobs = check_knobs(dict(knobs or {}))
            self.setup = RunSetup(device="cpu")
            for name in REGISTRY:  # the registry's order, as a trial applies them
                if name in self.knobs:
                    REGISTRY[name].apply(self.knobs[name], self.setup)
            _set_threads(self.setup)
        self.scaler = (torch.amp.GradScaler(runner.device_type(self.setup))
                       if self.setup.grad_scaling else None)
        runner.configure_backends(self.setup)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Tuned:
        """Inside a search's trial, the trial's config; else the config at `path`, else at
        TUNER_CONFIG (`tuner launch` sets it), else none (then nothing changes)."""
        session = user_job.active()
        if session is not None:
            return cls(session=session)
        chosen = path or os.environ.get(CONFIG_ENV)
        return cls(read_config(Path(chosen)) if chosen else None)

    @property
    def in_search(self) -> bool:
        """Whether this job runs as a search's trial (its end may come at any marked step)."""
        return self.session is not None

    def steps(self, batches: Iterable[T], every: int = 1) -> Iterator[T]:
        """Your loop's batches: `for batch in tuned.steps(loader):`. Outside a search, exactly
        `batches`. In a search's trial, each `every` batches are one timed step (with gradient
        accumulation, the batches of one optimizer step), fetching included, as in the tuner's
        own loop; work between epochs counts in the step that spans it. When the measurement is
        done the job ends at the next step (`MeasurementDone`, a BaseException: let it pass)."""
        session = self.session
        if session is None:
            yield from batches
            return
        if every < 1:
            raise ValueError(f"tuned.steps: every must be 1 or more, got {every}")
        for index, batch in enumerate(batches):
            session.fetched(index, batch, every)
            yield batch
        session.loop_ended()

    def mark_step(self, samples: int | None = None) -> None:
        """A step begins, in a loop a framework runs for you (tuner.worker.callbacks hooks it
        into the transformers and lightning Trainers): call it once per step, after the step's
        batch is fetched. `samples`: the step's samples (default: the config's batch size).
        Outside a search it does nothing."""
        if self.session is not None:
            self.session.marked(samples or self.setup.batch_size)

    def report(self, loss: Any = None, quality: Any = None) -> None:
        """The figure the accuracy guard compares, once per step: a training job's loss (a
        tensor or a number), or an inference job's quality (higher is better). Read only on
        the guard's run of the job; outside a search it does nothing."""
        if self.session is None or not self.session.guard:
            return
        value = loss if loss is not None else quality
        if value is None:
            raise ValueError("tuned.report: give loss=... (training) or quality=... (inference)")
        self.session.report(float(value.detach()) if isinstance(value, torch.Tensor)
                            else float(value))

    @property
    def device(self) -> torch.device:
        return torch.device(self.setup.device)

    def model(self, model: torch.nn.Module, optimizer: Any = None) -> Any:
        """The model on the config's device and layout, IPEX-optimized (with its optimizer)
        and compiled as the config says; returns the model, or (model, optimizer)."""
        for name, value, default in (("quantize", self.setup.quantize, "none"),
                                     ("backend", self.setup.backend, "torch")):
            if value != default:  # they need example and calibration inputs Tuned lacks
                raise UnsupportedChoice({name: value}, (
                    f"{name}={value}: Tuned.model does not apply it (it needs example and "
                    f"calibration inputs); tune {name} with an InferWorkload"))
        model = model.to(self.setup.device)
        if self.setup.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.setup.ipex_optimize:
            import intel_extension_for_pytorch as ipex

            dtype = torch.bfloat16 if self.setup.autocast_dtype == "bfloat16" else None
            if optimizer is None:
                model = ipex.optimize(model, dtype=dtype)
            else:
                model, optimizer = ipex.optimize(model, optimizer=optimizer, dtype=dtype)
        if self.setup.compile_options is not None:
            runner.register_compile_backend(self.setup)
            model = torch.compile(model, **self.setup.compile_options)  # type: ignore[assignment]
        return model if optimizer is None else (model, optimizer)

    def loader(self, dataset: Any, **arguments: Any) -> DataLoader:
        """A DataLoader of your dataset with your arguments (collate_fn, shuffle, sampler ...),
        the config's loader knobs taking the place of theirs."""
        guard = self.session is not None and self.session.guard
        for knob, argument in _LOADER_ARGS.items():
            if knob in self.knobs or (guard and knob in ("batch_size", "num_workers")):
                arguments[argument] = getattr(self.setup, knob)  # the guard's: fixed
        if arguments.get("pin_memory") and runner.device_type(self.setup) != "cuda":
            arguments["pin_memory"] = False  # nothing to pin for on a CPU run
        if not arguments.get("num_workers"):  # torch refuses worker options without workers
            arguments.pop("prefetch_factor", None)
            arguments.pop("persistent_workers", None)
        return DataLoader(dataset, **arguments)

    def to_device(self, batch: Any) -> Any:
        """The batch on the config's device: tensors anywhere in dicts, lists and tuples
        (named tuples too) moved, image batches (4-D) in channels_last when the config says."""
        if isinstance(batch, torch.Tensor):
            moved = batch.to(self.setup.device, non_blocking=self.setup.non_blocking)
            if self.setup.channels_last and moved.dim() == 4 and moved.is_floating_point():
                moved = moved.contiguous(memory_format=torch.channels_last)
            return moved
        if isinstance(batch, Mapping):  # dict, OrderedDict, a tokenizer's BatchEncoding
            fields = {key: self.to_device(value) for key, value in batch.items()}
            try:
                return type(batch)(fields)  # type: ignore[call-arg]
            except TypeError:  # a mapping type that cannot be built from a dict
                return fields
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
            return type(batch)(*(self.to_device(value) for value in batch))
        if isinstance(batch, list | tuple):
            return type(batch)(self.to_device(value) for value in batch)
        return batch

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The config's autocast (bf16/fp16), or a context that does nothing."""
        return runner.autocast(self.setup)

    def backward(self, loss: torch.Tensor) -> None:
        """`loss.backward()`, scaled first when fp16 needs gradient scaling (accumulate by
        calling it again before `step`)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, *optimizers: Any, max_grad_norm: float | None = None,
             parameters: Iterable[torch.Tensor] | None = None) -> None:
        """Each optimizer's step (and zero_grad), gradients unscaled and clipped to
        `max_grad_norm` first when asked (`parameters`: what to clip; default: every
        parameter the optimizers hold); the scaler updated once for all of them."""
        if max_grad_norm is not None:
            if self.scaler is not None:
                for optimizer in optimizers:
                    self.scaler.unscale_(optimizer)
            clipped = list(parameters) if parameters is not None else [
                p for optimizer in optimizers for group in optimizer.param_groups
                for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(clipped, max_grad_norm)
        for optimizer in optimizers:
            if self.scaler is not None:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()


def _set_threads(setup: RunSetup) -> None:
    """The config's thread counts for this process. torch takes the inter-op count once, before
    any parallel work: a second `Tuned` (or one made late) keeps what the process has, and
    says so when that differs."""
    if setup.interop_threads is not None and \
            torch.get_num_interop_threads() != setup.interop_threads:
        try:
            torch.set_num_interop_threads(setup.interop_threads)
        except RuntimeError:
            warnings.warn(f"tuner: inter-op threads stay {torch.get_num_interop_threads()} "
                          f"(the config says {setup.interop_threads}): make the Tuned before "
                          "any torch work", stacklevel=3)
    if setup.intra_op_threads is not None:
        torch.set_num_threads(setup.intra_op_threads)
