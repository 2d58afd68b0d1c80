"""The command loop, derived from a Predictor: inputs decoded in worker processes, batched
through preprocess and forward on the device, each output row postprocessed into its result,
results in input order with per-input failures, a progress bar on stderr, and the inputs
shared out between processes under torchrun (all of it ptcli.inference.batching's).

Chunked inputs: a predictor loaded ``chunked`` splits each preprocessed input (``chunks(data)``)
into pieces (a large image's tiles) that go through ``forward`` ``chunk_batch`` at a time; its
``merge(data, outputs)`` makes the input's one output row again. Inputs are still decoded in
the workers and shared out under torchrun like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .contract import Predictor, Source


class _Decode:
    """The DataLoader's load step (a class, so that it pickles under any start method)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def __call__(self, item):
        from ptcli.storage import is_url

        if is_url(item) and self.predictor.kind not in ("text", "prompt"):  # object storage: its bytes, here in the worker
            from ptcli.storage import read_bytes

            return self.predictor.decode(read_bytes(item))
        return self.predictor.decode(item)


class _Preprocess:
    """The DataLoader's collate step: the decoded inputs of a batch to what forward takes."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def __call__(self, datas: list):
        return self.predictor.preprocess(datas)


def run(predictor: Predictor, inputs: Sequence[Any], *, batch_size: int, workers: int | None = None,
        description: str = "predicting", chunk_batch: int | None = None,
        load: Callable[[Any], Any] | None = None) -> Iterator[tuple[Any, Any]]:
    """(input, result fields or ptcli.inference.results.Failed) for every input, in input order,
    with a progress bar on stderr. A chunked predictor's inputs go one at a time through the
    loop, their pieces ``chunk_batch`` a pass (default: ``batch_size``). decode's InputError
    (an unreadable input, an output file that exists) fails that input alone. ``load``: an
    input to its Sample, where inputs come decoded elsewhere (default: the predictor's decode,
    object storage read first)."""
    from ptcli.inference.batching import run_batched_with_progress
    from ptcli.inference.steps import forward_step

    forward, batch_size = forward_step(predictor, batch_size, chunk_batch)
    return run_batched_with_progress(
        description, inputs, load=load or _Decode(predictor), forward=forward, postprocess=predictor.postprocess,
        device=predictor.device, batch_size=batch_size, workers=workers, collate=_Preprocess(predictor),
        gradients=predictor.needs_gradients)


def load_predictor(recipe, source, device, *, where: str = "", **options) -> Predictor:
    """The recipe's Predictor class (``Recipe.predictor``) loaded from ``source`` on ``device``.
    A predictor that declares its options gets them checked, with their defaults filled in
    (an unknown or ill-typed one is a UsageError naming it), as ``load``'s keyword arguments
    and as ``predictor.option_values``; one that declares none (Core v3) gets ``options`` as given."""
    from ptcli.errors import PluginError, UsageError
    from ptcli.inference.options import OptionError, Options, declared, settle
    from ptcli.refs import load_ref

    if recipe.predictor is None:
        raise PluginError(f"recipe {recipe.name} declares no predictor")
    cls = load_ref(recipe.predictor)
    declaration = declared(cls)
    if declaration:
        try:
            options = settle(declaration, options, where=where)
        except OptionError as exc:
            raise UsageError(str(exc)) from None
    from ptcli.output import working

    named = source.describe(recipe.name) if isinstance(source, Source) else str(source)
    with working(f"loading {named}"):
        predictor = _derived_export(recipe, cls, source, device)
        if predictor is None:
            predictor = cls.load(source, device, **options)
    if not isinstance(predictor, Predictor):
        raise PluginError(f"recipe {recipe.name}: {cls.__name__}.load returned {type(predictor).__name__}, not a Predictor")
    predictor.source = source
    if predictor.device is None:  # a load that kept no device: where its model was asked for
        predictor.device = device
    if declaration:
        predictor.option_values = Options(options)
    return predictor


def _derived_export(recipe, cls, source, device) -> Predictor | None:
    """An export made from the predictor itself (ptcli.exporting.derived), loaded back: the
    predictor from the file's state, the file as its forward. None for anything else."""
    from ptcli.models import embedded

    checkpoint = source.checkpoint
    if checkpoint is None or not embedded.looks_like_export(checkpoint):
        return None
    from ptcli.models.exported import load
    from ptcli.models.sidecars import read_sidecar_for

    meta = read_sidecar_for(checkpoint, recipe.name)
    if meta.get("derived") != "predictor":
        return None
    model = load(checkpoint, meta, recipe).to(device)
    predictor = cls.from_export(dict(meta.get("predictor_state") or {}), device)
    predictor.device = device
    predictor.forward = lambda batch: model(batch)
    return predictor


def evaluates(recipe) -> bool:
    """Whether the recipe's Predictor scores itself on labelled data (``Predictor.evaluate``)."""
    from ptcli.refs import load_ref

    return recipe.predictor is not None and load_ref(recipe.predictor).evaluate is not Predictor.evaluate


def run_to_files(predictor: Predictor, inputs: Sequence[Any], *, output, suffix: str, overwrite: bool,
                 description: str, batch_size: int = 1, workers: int | None = 0) -> Iterator[tuple[Any, Any]]:
    """``run`` for a predictor whose results carry a file (ptcli.inference.results.Artifact, or
    bytes under "png"): each is written to ``output/<name><suffix><ending>`` (atomically; the
    ending the predictor's ``file_ending``) and the result says where, as "output". An input
    whose file exists is refused without running it, unless ``overwrite``."""
    from ptcli.errors import InputError
    from ptcli.files import atomic_write
    from ptcli.inference.inputs import refuse_existing
    from ptcli.inference.results import Failed, artifact_of

    ending = getattr(predictor, "file_ending", ".png")
    destinations, refused = [Path(output) / f"{Path(str(item)).stem}{suffix}{ending}" for item in inputs], {}
    for index, destination in enumerate(destinations):
        try:
            refuse_existing(destination, overwrite)
        except InputError as exc:
            refused[index] = Failed(str(exc))
    done = run(predictor, [item for index, item in enumerate(inputs) if index not in refused], batch_size=batch_size,
               workers=workers, description=description)
    for index, (item, destination) in enumerate(zip(inputs, destinations)):
        if index in refused:
            yield item, refused[index]
            continue
        _, result = next(done)
        if isinstance(result, Failed):
            yield item, result
            continue
        found = artifact_of(result)
        if found is None:
            yield item, Failed("the model gave no file to write")
            continue
        key, data = found
        atomic_write(destination, lambda tmp: Path(tmp).write_bytes(data))
        yield item, {"output": str(destination), **{k: v for k, v in result.items() if k != key}}
