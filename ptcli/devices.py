"""Device choice for every command that runs a model: auto|cpu|cuda|cuda:N|mps."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ptcli.errors import UsageError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."
_SYNTAX = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_syntax(requested: str | None) -> str:
    """The normalised --device value; a malformed one is a usage error (no torch needed)."""
    name = (requested or "auto").strip().lower()
    if not _SYNTAX.match(name):
        raise UsageError(f"unknown device {requested!r}: use {DEVICE_HELP}")
    return name


def available_devices() -> list[str]:
    """Every device this machine can run on, in the order auto prefers them."""
    import torch

    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(requested: str = "auto", supported: Sequence[str] = ("cuda", "mps", "cpu"), *,
                   option: str = "--device") -> "torch.device":
    """The torch.device for ``--device`` (or the config key ``option`` names, such as
    trainer.device); a device that is not there is a usage error naming it."""
    import torch

    if isinstance(requested, torch.device):  # already resolved (a task hook given the core's choice)
        requested = str(requested)
    name = check_device_syntax(requested)
    available = available_devices()
    usable = [d for d in available if d.split(":")[0] in supported]
    if name == "auto":
        for kind in supported:
            for device in usable:
                if device.split(":")[0] == kind:
                    return _own_gpu(torch.device(device), available)
        raise UsageError(f"no supported device found: this recipe runs on {', '.join(supported)}; available: {', '.join(available)}")
    kind = name.split(":")[0]
    if kind not in supported:
        raise UsageError(f"this recipe does not run on {kind}; it supports {', '.join(supported)}")
    if name == "cuda" and any(d.startswith("cuda") for d in available):
        return _own_gpu(torch.device("cuda:0"), available)
    if name not in available:
        what = "no CUDA device" if kind == "cuda" and not any(d.startswith("cuda") for d in available) else f"no device {name}"
        setting = f"{option} {requested}" if option.startswith("-") else f"{option}={requested}"
        raise UsageError(f"{setting} asked for, but this machine has {what}; available: {', '.join(available)}")
    return torch.device(name)


def _own_gpu(device: "torch.device", available: Sequence[str]) -> "torch.device":
    """Under torchrun, each process of a machine takes the GPU of its LOCAL_RANK (when there is
    one GPU per process; otherwise they share in turn)."""
    import torch

    from ptcli.distributed import local_rank, world_size

    gpus = [d for d in available if d.startswith("cuda")]
    if device.type != "cuda" or world_size() == 1 or not gpus:
        return device
    return torch.device(gpus[local_rank() % len(gpus)])


def bf16_native(device: "torch.device") -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU that says so, or a CPU with
    AVX-512 BF16 or AMX (elsewhere torch emulates bf16 on the CPU, slower than fp32)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False
