"""Headroom (issue 23): the model's FLOPs per sample counted in the trial process, the device's
matmul roof measured there, and each trial rated against them by the driver."""

from __future__ import annotations

import pytest

from tuner import metrics as mx
from tuner.driver.search.results import headroom_figures
from tuner.trial import GuardSettings, MeasureSettings, TrialConfig, WorkloadSpec
from tuner.worker import headroom
from tuner.workloads import build_workload


def test_flops_per_sample_are_counted_on_the_real_model() -> None:
    """tiny_cnn at 8x8: the count is the model's convolutions and linear layer; a training
    step is 3x the forward. Checked against FlopCounterMode over a real forward and backward
    at another batch: within a third (the backward is about twice the forward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    workload = build_workload(WorkloadSpec(name="tiny_cnn", options={"image_size": 8}))
    train = headroom.flops_per_sample(workload, "train")
    forward = headroom.flops_per_sample(workload, "infer")
    assert forward > 0 and train == 3 * forward
    model = workload.build_model()
    inputs = torch.randn(4, 3, 8, 8)
    with FlopCounterMode(display=False) as counter:
        model(inputs).sum().backward()
    assert counter.get_total_flops() / 4 == pytest.approx(train, rel=0.35)


def test_a_transformer_is_counted_through_its_layers() -> None:
    """nn.TransformerEncoder in eval mode runs one fused op the counter cannot see into; the
    count is taken in training mode: attention and feed-forward matmuls included."""
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=256, dropout=0.0,
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.encoder(x).mean(dim=1)

    class Workload:
        def build_model(self) -> nn.Module:
            return Encoder()

        def dataset(self, num_samples: int, seed: int | None = None) -> list:
            import torch

            return [(torch.randn(32, 64), 0) for _ in range(num_samples)]

    # per layer and token: q, k, v, out projections 4 x 64 x 64, feed-forward 2 x 64 x 256;
    # 2 FLOPs a multiply-add. The attention's own two matmuls (2 x 32 x 64 a token, 8% more
    # here) run in CPU attention kernels torch's counter has no formula for: not counted
    linear = 2 * 2 * 32 * (4 * 64 * 64 + 2 * 64 * 256)
    counted = headroom.flops_per_sample(Workload(), "infer")
    assert linear <= counted <= linear * (1 + 2 * 32 * 64 / (4 * 64 * 64 + 2 * 64 * 256))


def test_the_matmul_roof_is_measured_per_dtype() -> None:
    roofs = headroom.matmul_roofs("cpu")
    assert set(roofs) == {"float32", "bfloat16"} and all(r > 1e9 for r in roofs.values())


def test_a_workload_the_counter_cannot_follow_is_a_note_not_a_failure() -> None:
    class Broken:
        def build_model(self) -> None:
            raise RuntimeError("no model here")

    assert headroom.measure(Broken(), "cpu", "train") == {
        "error": "RuntimeError: no model here"}


def test_the_driver_rates_each_trial_against_the_roof_of_its_dtype() -> None:
    figures = {"flops_per_sample": 1e9, "roofs": {"cpu": {"float32": 1e12, "bfloat16": 4e12}}}
    rated = headroom_figures(figures, {"dtype": "bf16"}, 200.0)
    assert rated == {mx.ACHIEVED_TFLOPS: pytest.approx(0.2), mx.ROOF_SHARE: pytest.approx(0.05)}
    assert headroom_figures(figures, {}, 200.0)[mx.ROOF_SHARE] == pytest.approx(0.2)  # fp32
    quantized = headroom_figures(figures, {"quantize": "dynamic_int8"}, 200.0)
    assert mx.ROOF_SHARE not in quantized  # no int8 roof to compare with
    assert headroom_figures(figures, {"device": "cuda"}, 200.0) == {
        mx.ACHIEVED_TFLOPS: pytest.approx(0.2)}  # no GPU roof measured
    assert headroom_figures({}, {}, 200.0) == {}


@pytest.mark.slow
def test_the_first_trial_reports_its_headroom() -> None:
    """A real trial process run with headroom on: the figures come back in its info."""
    from tuner.worker.run import run_trial

    config = TrialConfig(study="h", trial_number=0, workload=WorkloadSpec(
        name="tiny_cnn", options={"image_size": 8}), knobs={"batch_size": 8},
        measure=MeasureSettings(warmup_steps=1, timed_steps=2, min_timed_steps=2),
        guard=GuardSettings(run=False), time_limit_s=120, headroom=True)
    result = run_trial(config)
    assert result.status == "ok", result.reason
    figures = result.info["headroom"]
    assert figures["device"] == "cpu" and figures["flops_per_sample"] > 0
    assert set(figures["roofs"]) == {"float32", "bfloat16"}
