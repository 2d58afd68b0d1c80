"""Per-input results, printed one way for every command: a human block or one JSON object per
line for each input, as results come; an input that failed is reported where it falls and the
rest go on; a count of failures on stderr and exit code 1 at the end if any failed.

A recipe says only how one result reads (``ResultFormat``); ``emit_results`` does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Failed:
    """An input that could not be processed, with a one-line reason. ``abort``: what failed
    was not the input but the storage it is in (the run stops: ptcli.errors.StoreUnavailable)."""

    message: str
    abort: bool = False


#: File endings by media type, for the files results carry.
ENDINGS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/tiff": ".tif", "image/bmp": ".bmp",
           "audio/wav": ".wav", "text/plain": ".txt", "application/json": ".json"}


class Artifact(bytes):
    """A file a result carries (an image's PNG, a heat map, a drawing): its bytes, and its
    media type. The core writes it where the user asked (a command's -o DIR, as
    DIR/<name><suffix><ending>), sends it as the body to a client that accepts its type, or
    base64 in JSON; a predictor never writes files. It is bytes, so code that reads a result's
    "png" as bytes reads it still."""

    media_type: str

    def __new__(cls, data: bytes, media_type: str = "image/png") -> Artifact:
        artifact = super().__new__(cls, data)
        artifact.media_type = media_type
        return artifact

    def __reduce__(self):  # across processes (decode workers, replicas) with its type
        return (Artifact, (bytes(self), self.media_type))

    @property
    def ending(self) -> str:
        return ENDINGS.get(self.media_type, ".bin")


def artifact_of(result: dict) -> tuple[str, bytes] | None:
    """(key, file) of the file a result carries: an Artifact, else (as before Core v4) the
    bytes of its "png"."""
    for key, value in result.items():
        if isinstance(value, Artifact):
            return key, value
    png = result.get("png")
    return ("png", png) if isinstance(png, bytes) else None


def top_predictions(probabilities, labels: list[str], k: int, *, with_index: bool = True) -> list[dict]:
    """A classifier's k best for one input (a 1-D tensor of probabilities), as every
    classification command and server prints them: label, index (unless not wanted), score."""
    scores, indices = probabilities.topk(k)
    return [{"label": labels[i], **({"index": i} if with_index else {}), "score": round(s, 6)}
            for s, i in zip(scores.tolist(), indices.tolist())]


def _path_key(item: Any) -> dict:
    """{"input": path}; a video's frame adds its "frame" index and "time"."""
    key = getattr(item, "key", None)
    return key() if callable(key) else {"input": str(item)}


def _path_label(number: int, item: Any) -> str:
    return str(item)


@dataclass(frozen=True)
class ResultFormat:
    """How one result reads. ``human(item, result)`` is its text block; ``fields(item, result)``
    the JSON object's fields beside the input's own (``key(item)``, default ``{"input": path}``);
    ``label(number, item)`` names an input in an error line (``number`` counts from 1)."""

    human: Callable[[Any, Any], str]
    fields: Callable[[Any, Any], dict]
    key: Callable[[Any], dict] = _path_key
    label: Callable[[int, Any], str] = _path_label
    #: What the inputs are, in the closing count ("3 of 10 inputs failed").
    noun: str = "inputs"
    #: What happened to the failed ones, in that count.
    failed: str = "failed"


def emit_results(results: Iterable[tuple[Any, Any]], fmt: ResultFormat, *, total: int, json_output: bool,
                 before_exit: Callable[[], None] | None = None) -> int:
    """Print (input, result or Failed) pairs as they come. ``before_exit`` runs once all are
    printed (a closing warning). Raises typer.Exit(1) if any failed; else returns the count."""
    from ptcli.output import emit, emit_json, error_line

    failures = count = 0
    for count, (item, result) in enumerate(results, start=1):
        if isinstance(result, Failed):
            failures += 1
            if json_output:
                emit_json({**fmt.key(item), "error": result.message})
            else:
                error_line(f"{fmt.label(count, item)}: {result.message}")
        elif json_output:
            emit_json({**fmt.key(item), **fmt.fields(item, result)})
        else:
            emit(fmt.human(item, result))
    if before_exit is not None:
        before_exit()
    if failures:
        import typer

        if not json_output:
            error_line(f"{failures} of {total} {fmt.noun} {fmt.failed}")
        raise typer.Exit(1)
    return count


def prediction_format(noun: str = "inputs", failed: str = "could not be read", fields: Callable | None = None) -> ResultFormat:
    """A classifier's results: the input's name and its top-k lines, or ``"predictions"``.
    The result is the list of predictions, or (``fields`` given: a predictor's) the fields
    holding it as "predictions"."""
    from ptcli.output import format_predictions

    if fields is not None:
        return ResultFormat(human=lambda item, result: format_predictions(str(item), result["predictions"]),
                            fields=fields, noun=noun, failed=failed)
    return ResultFormat(human=lambda item, predictions: format_predictions(str(item), predictions),
                        fields=lambda item, predictions: {"predictions": predictions}, noun=noun, failed=failed)
