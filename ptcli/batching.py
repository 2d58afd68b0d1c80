"""Batched inference over many inputs, shared by every recipe.

A recipe gives three functions, as in Hugging Face pipelines: ``load`` (one input to a tensor,
run in DataLoader workers), ``forward`` (a batch through the model, on the device) and
``postprocess`` (one row of the output to a plain result). This module does the batching,
worker processes, device transfer and ordering. An input that ``load`` cannot read (it raises
InputError) becomes a ``Failed`` result for that input alone; the rest go on. Results come out
in input order, batch by batch, as soon as each batch is done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ptcli.errors import InputError


@dataclass(frozen=True)
class Failed:
    """An input that could not be processed, with a one-line reason."""

    message: str


class _LoadedInputs:
    """A map-style dataset: item i is (i, tensor) or (i, Failed)."""

    def __init__(self, inputs: Sequence[Any], load: Callable[[Any], Any]) -> None:
        self.inputs = inputs
        self.load = load

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        try:
            return index, self.load(self.inputs[index])
        except InputError as exc:
            return index, Failed(str(exc))


def stack(items: list) -> Any:
    import torch

    return torch.stack(items)


class _Collate:
    """Splits failed inputs from good ones and batches the good ones with ``combine``."""

    def __init__(self, combine: Callable[[list], Any]) -> None:
        self.combine = combine

    def __call__(self, items):
        good = [(i, x) for i, x in items if not isinstance(x, Failed)]
        failed = [(i, x) for i, x in items if isinstance(x, Failed)]
        batch = self.combine([x for _, x in good]) if good else None
        return [i for i, _ in good], batch, failed


def to_device(batch: Any, device: Any) -> Any:
    """A tensor, or a dict, list or tuple of them, on ``device``."""
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch.to(device, non_blocking=True) if hasattr(batch, "to") else batch


def default_workers(n_inputs: int, batch_size: int) -> int:
    """Worker processes for decoding: none for a batch or less (start-up would cost more than it
    saves), else up to 4 but leaving a core for the model."""
    if n_inputs <= batch_size:
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def run_batched(
    inputs: Sequence[Any],
    *,
    load: Callable[[Any], Any],
    forward: Callable[[Any], Any],
    postprocess: Callable[[Any], Any],
    device: Any,
    batch_size: int = 16,
    workers: int | None = None,
    collate: Callable[[list], Any] = stack,
) -> Iterator[tuple[Any, Any]]:
    """Yield (input, result or Failed) for every input, in input order. ``collate`` turns the
    loaded inputs of a batch into what ``forward`` takes (default: one stacked tensor)."""
    import torch
    from torch.utils.data import DataLoader

    if workers is None:
        workers = default_workers(len(inputs), batch_size)
    loader = DataLoader(
        _LoadedInputs(inputs, load),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_Collate(collate),
        pin_memory=device.type == "cuda",
    )
    with torch.inference_mode():
        for indices, batch, failed in loader:
            results: dict[int, Any] = dict(failed)
            if batch is not None:
                outputs = forward(to_device(batch, device))
                for row, index in enumerate(indices):
                    results[index] = postprocess(outputs[row])
            for index in sorted(results):
                yield inputs[index], results[index]


def run_batched_with_progress(description: str, inputs: Sequence[Any], **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """run_batched, advancing a progress bar on stderr (see ptcli.output.progress) per input."""
    from ptcli.output import progress

    with progress() as bar:
        task = bar.add_task(description, total=len(inputs))
        for item in run_batched(inputs, **kwargs):
            bar.advance(task)
            yield item
