"""Batched inference over many inputs, shared by every recipe.

A recipe gives three functions, as in Hugging Face pipelines: ``load`` (one input to a tensor,
run in DataLoader workers), ``forward`` (a batch through the model, on the device) and
``postprocess`` (one row of the output to a plain result). This module does the batching,
worker processes, device transfer and ordering. An input that ``load`` cannot read (it raises
InputError) becomes a ``Failed`` result for that input alone; the rest go on. Results come out
in input order, batch by batch, as soon as each batch is done.

Inputs that are not classification-shaped:

- ``load`` may return ``Sample(data, meta)``: ``data`` goes into the batch, ``meta`` (an image's
  original size, a file's sample rate: anything picklable) is handed to
  ``postprocess(output_row, meta)`` for that input.
- ``collate=as_list`` keeps a batch as a list (images of different sizes, as detectors take);
  ``forward`` then gets a list (each tensor on the device) and returns one output per input.

Under ``torchrun --nproc-per-node N``, the inputs are shared out between the processes (whole
batches, in turn) and the main process yields every result once, in input order; the others
yield nothing. See ptcli.distributed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ptcli.errors import InputError, StoreUnavailable
from ptcli.inference.results import Failed


from ptcli.inference.contract import Sample
from ptcli.inference.steps import gradient_mode, to_device


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
        except StoreUnavailable as exc:  # raised here it would reach the command as a worker's crash
            return index, Failed(str(exc), abort=True)
        except InputError as exc:
            return index, Failed(str(exc))


def stack(items: list) -> Any:
    """The default collate: inputs of one shape, stacked into one tensor."""
    import torch

    return torch.stack(items)


def as_list(items: list) -> list:
    """A collate for inputs that do not stack (images of different sizes): the batch is a list."""
    return list(items)


class _Collate:
    """Splits failed inputs from good ones and batches the good ones with ``combine``."""

    def __init__(self, combine: Callable[[list], Any]) -> None:
        self.combine = combine

    def __call__(self, items):
        from ptcli.inference.timings import stage

        with stage("preprocess"):
            return self._collated(items)

    def _collated(self, items):
        good = [(i, x) for i, x in items if not isinstance(x, Failed)]
        failed = [(i, x) for i, x in items if isinstance(x, Failed)]
        # (has meta, meta): a sentinel object would not survive the trip from a worker process.
        metas = [(True, x.meta) if isinstance(x, Sample) else (False, None) for _, x in good]
        batch = self.combine([x.data if isinstance(x, Sample) else x for _, x in good]) if good else None
        return [i for i, _ in good], batch, failed, metas


def ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C reaches every process of the terminal's group; the main one stops the command
    (exit 130, results so far printed whole) and shuts the workers down. A worker dying of it
    first would turn that into a "worker exited unexpectedly" crash."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the main process's handler (ptcli.cli.app) is not theirs


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
    postprocess: Callable[..., Any],
    device: Any,
    batch_size: int = 16,
    workers: int | None = None,
    collate: Callable[[list], Any] = stack,
    distributed: bool = True,
    gradients: bool = False,
) -> Iterator[tuple[Any, Any]]:
    """Yield (input, result or Failed) for every input, in input order. ``collate`` turns the
    loaded inputs of a batch into what ``forward`` takes (default: one stacked tensor).
    ``distributed``: under torchrun, share the inputs out between the processes.
    ``gradients``: forward differentiates (an attack, Grad-CAM), so it runs outside inference mode."""
    from ptcli import distributed as dist

    if distributed and dist.world_size() > 1:
        yield from _run_shared(inputs, load=load, forward=forward, postprocess=postprocess, device=device,
                               batch_size=batch_size, workers=workers, collate=collate, gradients=gradients)
        return
    for batch in _batches(range(len(inputs)), inputs, load, forward, postprocess, device, batch_size, workers, collate,
                          gradients):
        for index, result in batch:
            yield inputs[index], result


def _batches(indices: Sequence[int], inputs, load, forward, postprocess, device, batch_size, workers, collate,
             gradients=False):
    """Per batch of ``indices`` (in order), the list of (index, result or Failed)."""
    from torch.utils.data import DataLoader, Subset

    from ptcli.inference.timings import stage

    if workers is None:
        workers = default_workers(len(indices), batch_size)
    if workers:  # workers' exits are signals (SIGCHLD): they need a sound signal stack
        from ptcli.models.exported import drop_dangling_signal_stack

        drop_dangling_signal_stack()
    loader = DataLoader(
        Subset(_LoadedInputs(inputs, load), list(indices)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_Collate(collate),
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_sigint,
    )
    batches = iter(loader)
    with gradient_mode(gradients):
        while True:
            with stage("decode"):  # with workers: the wait for them
                loaded = next(batches, None)
            if loaded is None:
                return
            batch_indices, batch, failed, metas = loaded
            stopped = next((f for _, f in failed if f.abort), None)
            if stopped is not None:
                raise StoreUnavailable(stopped.message)
            results: dict[int, Any] = dict(failed)
            if batch is not None:
                with stage("forward"):
                    outputs = forward(to_device(batch, device))
                with stage("postprocess"):
                    for row, (index, (has_meta, meta)) in enumerate(zip(batch_indices, metas)):
                        results[index] = postprocess(outputs[row], meta) if has_meta else postprocess(outputs[row])
            yield sorted(results.items())


def _run_shared(inputs, *, batch_size, **kwargs):
    """Batch b of the inputs is done by process b mod N; after each round of N batches the main
    process gathers them and yields their results in order."""
    from ptcli import distributed as dist

    rank, world = dist.rank(), dist.world_size()
    n_batches = -(-len(inputs) // batch_size)
    mine = [i for b in range(rank, n_batches, world) for i in range(b * batch_size, min((b + 1) * batch_size, len(inputs)))]
    with dist.process_group():
        batches = _batches(mine, inputs, batch_size=batch_size, **kwargs)
        for round_start in range(0, n_batches, world):
            done = next(batches) if round_start + rank < n_batches else []
            gathered = dist.gather_to_main(done)
            if gathered is not None:
                for index, result in sorted(item for part in gathered for item in part):
                    yield inputs[index], result


def run_batched_with_progress(description: str, inputs: Sequence[Any], **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """run_batched, advancing a progress bar on stderr (see ptcli.output.progress) per input."""
    from ptcli.inference.timings import stage
    from ptcli.output import progress

    with progress() as bar:
        task = bar.add_task(description, total=len(inputs))
        for item in run_batched(inputs, **kwargs):
            bar.advance(task)
            with stage("write"):  # what the command does with a result before asking for the next
                yield item
