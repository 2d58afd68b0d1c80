"""Several processes of one command under ``torchrun`` (inference; training goes through
Accelerate): who this process is, a process group for the command's lifetime, and gathering
plain results on the main process, which alone writes output."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main_process() -> bool:
    return rank() == 0


_objects_group = None


@contextmanager
def process_group():
    """The default process group (made here from torchrun's environment if there is none) and a
    gloo group for gathering Python objects. Inference only moves plain results between
    processes, so gloo serves on any device, and processes may share one GPU (NCCL refuses
    that). A group made here is torn down on the way out, after every process has arrived: left
    to interpreter exit, gloo's threads can abort a process that has finished its work."""
    import torch.distributed as dist

    global _objects_group
    made = not dist.is_initialized()
    if made:
        dist.init_process_group(backend="gloo")
    _objects_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    try:
        yield
    finally:
        group, _objects_group = _objects_group, None
        if made:
            dist.barrier(group=group)
            dist.destroy_process_group()


def gather_to_main(obj: Any) -> list | None:
    """Every process's ``obj`` (picklable: plain results, CPU tensors), as a list in rank order
    on the main process; None on the others."""
    import torch.distributed as dist

    parts = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, parts, dst=0, group=_objects_group)
    return parts
