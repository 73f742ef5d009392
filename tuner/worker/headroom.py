"""How far a config is from the machine's limit: the workload's FLOPs per sample, counted once
(torch.utils.flop_counter over an eager fp32 copy of the model's forward in training mode, two
samples; a training step is taken as 3x the forward), and the device's matmul roof per dtype,
measured here (a large matmul timed for a fraction of a second), not read from a spec sheet: a
shared VM's cores, a power cap or a thread setting all show in it.

Run in the first trial on each device of a study, before its model is timed; the driver keeps
the figures and rates every trial against them (achieved FLOP/s, share of the roof).
"""

from __future__ import annotations

import time
from typing import Any

ROOF_DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "bfloat16", "float16")}
ROOF_SIZE = {"cpu": 1024, "cuda": 8192}  # the matmul's side: large enough to be compute-bound
ROOF_SECONDS = 0.25  # per dtype, after one warm-up multiply: a dozen or more multiplies
FLOP_SAMPLES = 2  # a batch this small keeps the count cheap; FLOPs scale with samples
TRAIN_OVER_FORWARD = 3.0  # a training step: forward + backward (about 2x the forward)


def measure(workload: Any, device: str, scenario: str) -> dict[str, Any]:
    """{"flops_per_sample": F, "roofs": {dtype: FLOP/s}, "device": d}; {"error": why} when the
    count or the roof could not be taken (the trial goes on: this is a report, not a gate)."""
    try:
        return {"flops_per_sample": flops_per_sample(workload, scenario),
                "roofs": matmul_roofs(device), "device": _kind(device)}
    except Exception as error:  # noqa: BLE001 - a workload FlopCounterMode cannot follow
        return {"error": f"{type(error).__name__}: {str(error)[:300]}"}


def flops_per_sample(workload: Any, scenario: str) -> float:
    """FLOPs per sample of one inference (the model's forward, counted) or one training step
    (3x the forward: the backward pass costs about twice the forward, the usual estimate), on
    the CPU in fp32 eager: the model's arithmetic, whatever the knobs do to its speed. Only the
    model runs here, never the workload's loss: a sample count it was not built for must not
    reach code of the user's."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # training mode, whatever the scenario: the same arithmetic, and no fused inference fast
    # path (nn.TransformerEncoder's in eval mode is one op the counter cannot see into: it
    # counted a Transformer's 6.3 MFLOP a sample as 512); a copy of the model, built here
    model = workload.build_model().train()
    inputs = _batch(workload)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(inputs)
    forward = counter.get_total_flops() / len(inputs)
    return forward if scenario == "infer" else TRAIN_OVER_FORWARD * forward


def _batch(workload: Any) -> Any:
    import torch

    dataset = workload.dataset(FLOP_SAMPLES, seed=0)
    return torch.stack([torch.as_tensor(dataset[index][0]) for index in range(FLOP_SAMPLES)])


def matmul_roofs(device: str) -> dict[str, float]:
    """The best FLOP/s of a square matmul per dtype on `device`, with this process's threads."""
    import torch

    kind = _kind(device)
    size = ROOF_SIZE[kind]
    roofs: dict[str, float] = {}
    for name in ROOF_DTYPES[kind]:
        a = torch.randn(size, size, device=device).to(getattr(torch, name))
        b = torch.randn(size, size, device=device).to(getattr(torch, name))
        (a @ b).sum().item()  # warm-up: kernels chosen, memory touched
        best, spent = 0.0, 0.0
        while spent < ROOF_SECONDS:
            started = time.perf_counter()
            (a @ b).sum().item()  # .item() waits for a GPU
            elapsed = time.perf_counter() - started
            spent += elapsed
            best = max(best, 2 * size**3 / elapsed)
        roofs[name] = best
    return roofs


def _kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"
