"""What a recipe declares to be served: ``Recipe.serve`` names a function
``(checkpoint, model, weights, device) -> Servable``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Input kinds: what /predict takes and what the page at / offers.
IMAGE, TEXT, AUDIO = "image", "text", "audio"


@dataclass
class Servable:
    """A loaded model, ready to serve."""

    #: "image", "audio" (files: multipart, raw bytes, base64 JSON) or "text" (JSON or text/plain).
    kind: str
    #: One input (bytes; for text, a str) to what ``predict`` takes; InputError when unreadable.
    #: Runs in worker threads, beside other requests' decoding, and must not compute with torch:
    #: torch's OpenMP threads run at half speed or worse once several threads compute with it
    #: (measured: Lite0 at 12 ms a forward alone, 28-38 ms beside another torch thread).
    decode: Callable[[Any], Any]
    #: A batch of decoded inputs to one JSON-ready dict each, in order (the command's --json
    #: object without its "input"). Runs on the model thread, one batch at a time; the model
    #: is loaded and warmed up there too, so that it is the only thread torch computes on.
    predict: Callable[[list], list[dict]]
    #: What is served, for the log and the page: "classify-image (efficientnet_lite0)".
    title: str
    #: A decoded input to warm the model up with before /ready says yes (None: no warm-up).
    warmup: Any = None


def image_from_bytes(data: bytes):
    """An upright 8-bit RGB PIL image from a file's bytes, as every image recipe reads files."""
    import io
    import re

    from ptcli.errors import InputError
    from ptcli.imaging import open_image, to_rgb

    try:
        return to_rgb(open_image(io.BytesIO(data)))
    except InputError as exc:  # Pillow names the buffer, which means nothing to a client
        raise InputError(re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the upload", str(exc))) from exc


def sample_image():
    from ptcli.exporting.spec import sample_image as packaged

    return packaged().read_bytes()
