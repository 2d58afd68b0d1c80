"""The one composition of a Predictor's steps, which every way of running it shares (the
command's loop, serve and video through ``Predictor.predict``, ``ptcli eval``, ``ptcli
benchmark``): the batch moved to the device, ``forward`` at the predictor's precision (--dtype),
a chunked predictor's pieces batched through it and merged back, under inference mode unless
the predictor differentiates. Below the contract and the loop, importing neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def to_device(batch: Any, device: Any) -> Any:
    """A tensor, or a dict, list or tuple of them, on ``device``."""
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch.to(device, non_blocking=True) if hasattr(batch, "to") else batch


def gradient_mode(needs_gradients: bool) -> contextlib.AbstractContextManager:
    """torch's inference mode, or (a forward that differentiates: an attack, a Grad-CAM) gradients on."""
    import torch

    return torch.enable_grad() if needs_gradients else torch.inference_mode()


def same_shape_runs(chunks: list, most: int) -> Iterator[list]:
    """Consecutive chunks of one shape, at most ``most`` at a time: chunks of other sizes (a
    whole image after its tiles) never share a pass, where padding would change the result."""
    run: list = []
    for chunk in chunks:
        if run and (len(run) == most or getattr(chunk, "shape", None) != getattr(run[0], "shape", None)):
            yield run
            run = []
        run.append(chunk)
    if run:
        yield run


def chunked_forward(predictor, chunk_batch: int) -> Callable[[Any], list]:
    """forward over each input's chunks, ``chunk_batch`` chunks a pass, merged per input. merge
    gets the outputs lazily, computed as it takes them, so that it can fold them in one by one
    (a large image's tiles) and memory holds one pass's outputs, not all of them."""

    def outputs(chunks: list) -> Iterator:
        for part in same_shape_runs(chunks, chunk_batch):
            yield from predictor.forward(part)

    def forward(batch) -> list:  # chunks before merge: merge may need what chunks worked out
        return [predictor.merge(data, outputs(predictor.chunks(data))) for data in batch]

    return forward


def forward_step(predictor, batch_size: int, chunk_batch: int | None = None) -> tuple[Callable[[Any], Any], int]:
    """(the predictor's forward as every runner calls it, the inputs a batch should hold): at
    its precision, and for a chunked predictor over each input's pieces (one input a batch,
    its pieces ``chunk_batch`` a pass, default the predictor's, else ``batch_size``)."""
    from ptcli.inference.precision import in_precision

    forward: Callable = predictor.forward
    if predictor.chunked:
        forward = chunked_forward(predictor, chunk_batch or predictor.chunk_batch or batch_size)
        batch_size = 1
    return in_precision(predictor, forward), batch_size


def predict_step(predictor, samples: list, chunk_batch: int | None = None) -> list[dict]:
    """Decoded samples through preprocess, forward and postprocess, in this thread: the
    server's step, a video's frames'. A chunked predictor's pieces go ``chunk_batch`` a pass
    (default: as many as the samples)."""
    from ptcli.inference.timings import stage

    forward, _ = forward_step(predictor, max(1, len(samples)), chunk_batch)
    with gradient_mode(predictor.needs_gradients):
        with stage("preprocess"):
            batch = predictor.preprocess([s.data for s in samples])
        with stage("forward"):
            outputs = forward(to_device(batch, predictor.device))
        with stage("postprocess"):
            return [predictor.postprocess(outputs[i], s.meta) for i, s in enumerate(samples)]
