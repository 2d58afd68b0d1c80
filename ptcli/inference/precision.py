"""--dtype for inference: fp32, or bf16 through torch.autocast where the device computes bf16
in hardware (CUDA GPUs with bf16 units, CPUs with AVX-512 BF16 or AMX). bf16 keeps fp32's
range, so nothing overflows; matrix products and convolutions run in bf16, reductions and
softmax stay in fp32 (autocast's own lists)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ptcli.errors import UsageError

DTYPES = ("fp32", "bf16")


def check_dtype(recipe, dtype: str, device) -> str:
    """The --dtype, refused (one line) where the recipe or the device cannot take it."""
    from ptcli.devices import bf16_native

    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype == "bf16":
        if "bf16" not in recipe.devices.precisions:
            raise UsageError(f"{recipe.name} runs in fp32 only (its precisions: {', '.join(recipe.devices.precisions)})")
        if not bf16_native(device):
            what = "this CPU has no bf16 units (AVX-512 BF16 or AMX)" if device.type == "cpu" else f"{device} has no bf16 units"
            raise UsageError(f"{what}: bf16 would be emulated, slower than fp32; drop --dtype bf16")
    return dtype


def autocast(predictor) -> contextlib.AbstractContextManager:
    """torch.autocast for a predictor loaded at bf16, else nothing."""
    if getattr(predictor, "precision", "fp32") != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(predictor.device.type, dtype=torch.bfloat16)


def in_precision(predictor, forward: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``forward`` run at the predictor's --dtype."""
    if getattr(predictor, "precision", "fp32") == "fp32":
        return forward

    def run(batch):
        with autocast(predictor):
            return forward(batch)

    return run
