"""What the server runs: a Servable, made from the recipe's Predictor (``servable_from``), or
for a recipe written before the contract, by the function its ``Recipe.serve`` names,
``(checkpoint, model, weights, device) -> Servable``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Input kinds: what /predict takes and what the page at / offers.
from ptcli.inference.contract import AUDIO, IMAGE, PROMPT, TEXT  # noqa: E402,F401


@dataclass
class Servable:
    """A loaded model, ready to serve."""

    #: "image", "audio" (files: multipart, raw bytes, base64 JSON) or "text" (JSON or text/plain).
    kind: str
    #: One input (bytes; for text, a str) to what ``predict`` takes; InputError when unreadable.
    #: Runs on the model's thread, in turn with its batches, for a model on the CPU; else in
    #: worker threads beside other requests' decoding (ptcli.serving.workers.LocalModel._decode); must not
    #: compute with torch: torch's OpenMP threads run at half speed or worse once several threads
    #: compute with it (measured: Lite0 at 12 ms a forward alone, 28-38 ms beside another torch thread).
    decode: Callable[[Any], Any]
    #: A batch of decoded inputs to one JSON-ready dict each, in order (the command's --json
    #: object without its "input"). Runs on the model thread, one batch at a time; the model
    #: is loaded and warmed up there too, so that it is the only thread torch computes on.
    predict: Callable[[list], list[dict]]
    #: What is served, for the log and the page: "classify-image (efficientnet_lite0)".
    title: str
    #: A decoded input to warm the model up with before /ready says yes (None: no warm-up).
    warmup: Any = None
    #: The Predictor it serves, when it comes from one: its optional hooks (a file to answer
    #: with, a stream of pieces) are offered to clients that ask for them.
    predictor: Any = None


def image_from_bytes(data: bytes):
    """An upright 8-bit RGB PIL image from a file's bytes, as every image recipe reads files."""
    from ptcli.vision.imaging import read_image

    return read_image(data)


def sample_image() -> bytes:
    """The packaged photo's bytes (for a recipe's own ``serve`` function to warm up on)."""
    from ptcli.inference.contract import sample_image_bytes

    return sample_image_bytes()


def servable_from(predictor) -> Servable:
    """What a recipe's Predictor (ptcli.inference.contract) serves as: its decode in the request
    threads, its preprocess, forward and postprocess on the model thread, warmed up on its own
    warm-up input."""
    warmup = predictor.warmup()
    return Servable(kind=predictor.kind, decode=predictor.decode, predict=predictor.predict, title=predictor.title,
                    warmup=None if warmup is None else predictor.decode(warmup), predictor=predictor)


def load_servable(recipe, *, checkpoint=None, model=None, weights=None, device, options: dict | None = None) -> Servable:
    """The recipe's model, loaded to serve with its ``options`` (models.yaml's): through its
    Predictor, else (a recipe written for an earlier ptcli) its own ``serve`` function."""
    if recipe.predictor is not None:
        from ptcli.inference.contract import Source
        from ptcli.inference.runner import load_predictor

        return servable_from(load_predictor(recipe, Source(checkpoint, model, weights), device, **(options or {})))
    from ptcli.refs import load_ref

    return load_ref(recipe.serve)(checkpoint=checkpoint, model=model, weights=weights, device=device)
