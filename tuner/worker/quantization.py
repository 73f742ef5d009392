"""Quantizing an inference model, the way current PyTorch recommends on CPU: torchao.

`torch.ao.quantization` (eager `quantize_dynamic`, FX) is deprecated in favour of torchao:
`torchao.quantization.quantize_` for dynamic and weight-only schemes, and torchao's PT2E flow
(torch.export, `X86InductorQuantizer`, calibration, `convert_pt2e`, lowered by inductor) for
static int8. Runs in the trial process only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

METHODS = ("none", "dynamic_int8", "weight_int8", "weight_int4", "weight_int2", "weight_int1",
           "static_int8")


def quantize(model: nn.Module, method: str, example: torch.Tensor,
             calibration: list[torch.Tensor]) -> Any:
    """The model quantized by `method` (a module, or a callable graph module for static)."""
    if method == "none":
        return model
    if method == "static_int8":
        return _static_int8(model, example, calibration)
    from torchao.quantization import quantize_

    quantize_(model, _weight_config(method))
    return model


def _weight_config(method: str) -> Any:
    import torchao.quantization as tq

    if method == "dynamic_int8":  # int8 weights, activations quantized per batch
        return tq.Int8DynamicActivationInt8WeightConfig()
    if method == "weight_int8":
        return tq.Int8WeightOnlyConfig()
    from torchao.quantization.granularity import PerAxis

    bits = int(method.removeprefix("weight_int"))  # 4, 2, 1: per output channel, CPU kernels
    return tq.IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"),
                                   granularity=PerAxis(0))


def _static_int8(model: nn.Module, example: torch.Tensor,
                 calibration: list[torch.Tensor]) -> Any:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    try:
        prepared = prepare_pt2e(exported, quantizer)
    except ValueError as error:  # the quantizer's pattern matching does not fit this graph
        from importlib import metadata

        from tuner.knobs.base import UnsupportedChoice

        raise UnsupportedChoice({"quantize": "static_int8"}, (
            f"quantize=static_int8: torchao {metadata.version('torchao')}'s X86InductorQuantizer "
            f"cannot annotate this model under torch {torch.__version__}: {error}")) from None
    with torch.no_grad():
        for inputs in calibration:
            prepared(inputs)
    return convert_pt2e(prepared)
