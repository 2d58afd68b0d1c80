"""Work done once for a whole distributed run, shared out between its processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def map_shared(fn: Callable[[list], list], items: Sequence) -> list:
    """``fn(items)``, computed once across the processes of a distributed run: each process
    does every world-size-th item and all of them get the whole result, in order. Alone, it
    is just ``fn(items)``. ``fn`` maps a list to a list of the same length."""
    import torch.distributed as dist

    items = list(items)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return fn(items)
    rank, world = dist.get_rank(), dist.get_world_size()
    share = fn(items[rank::world])
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, share)
    merged: list[Any] = [None] * len(items)
    for index, part in enumerate(gathered):
        merged[index::world] = part
    return merged
