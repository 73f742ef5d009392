"""Trainer callbacks that mark a framework's steps for the tuner, so a job whose loop is a
`transformers.Trainer` or a `lightning.Trainer` is tuned as it is:

    tuned = Tuned.load()
    trainer = Trainer(..., callbacks=[hf_callback(tuned)])          # transformers
    trainer = L.Trainer(..., callbacks=[lightning_callback(tuned)])  # lightning

Each step begins after its batch is fetched (`Tuned.mark_step`), and on the guard's run each
step's training loss is reported (`Tuned.report`). Outside a search they do nothing.
"""

from __future__ import annotations

from typing import Any

from tuner.worker.apply import Tuned
from tuner.worker.user_job import leading_size


def hf_callback(tuned: Tuned) -> Any:
    """A `transformers.TrainerCallback`: a step per optimizer step (its micro-batches
    included); on the guard's run it logs every step, to report each step's loss."""
    from transformers import TrainerCallback

    class TunerSteps(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            tuned.mark_step(args.per_device_train_batch_size * args.gradient_accumulation_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if tuned.session is not None and tuned.session.guard:
                control.should_log = True  # the loss since the last log: this step's

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **_: Any) -> None:
            if logs and "loss" in logs:
                tuned.report(loss=logs["loss"])

    return TunerSteps()


def lightning_callback(tuned: Tuned) -> Any:
    """A `lightning.Callback`: a step per training batch; reports what `training_step`
    returned (its loss)."""
    import lightning

    class TunerSteps(lightning.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any,
                                 batch_idx: int) -> None:
            tuned.mark_step(leading_size(batch))

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None:
                tuned.report(loss=loss)

    return TunerSteps()
