"""The one inference contract: what a recipe writes so that its command, `ptcli serve` and
anything else that runs its model come from the core.

A recipe's ``Predictor`` is Hugging Face's preprocess/_forward/postprocess and LitServe's
decode/predict/encode in one class:

- ``options``: the recipe's own options, declared once (ptcli.inference.options.Option:
  ``top_k``, ``threshold``...); the command's flags, a served model's settings and what a
  request may set all come from it. The values are ``self.option_values`` (``self.option_values.top_k``);
- ``load(source, device, **options)``: the model, once, from a checkpoint, a model name, a
  weights file or an export, on a device (the options' values as keyword arguments too);
- ``decode(item)``: one input (a path, the bytes of an upload, a text, a video's frame: a
  ptcli.video.frames.Frame, which ptcli.vision.imaging.read_image reads) to a ``Sample`` (what the
  batch needs, and metadata for postprocess). Torch-free: it runs in decode workers (the
  command's DataLoader processes, serve's request threads) beside the model;
- ``preprocess(datas)``: the decoded inputs of a batch to what ``forward`` takes;
- ``forward(batch)``: the model, on the device; one output row per input;
- ``postprocess(row, meta)``: one row to the command's ``--json`` object (without its "input").

Optional hooks: ``chunks(data)`` and ``merge(data, outputs)`` for an input that goes through
the model in pieces (a large image's tiles; see ptcli.inference.steps); ``stream(sample,
emit)`` for outputs that come a piece at a time (a language model's tokens); a result that
carries a file (ptcli.inference.results.Artifact) with ``writes``, which the core writes
(-o DIR) or sends (``encode``, ``media_type``); ``render(image, result)`` for the picture a
video's frame becomes (-o on a video); ``evaluate(data)`` for `ptcli eval` on labelled data;
``describe`` and ``summary`` for the command's human output; ``check_source``,
``check_options`` and ``check_run`` for mistakes caught before anything loads; ``from_export``
for a derived export loaded back. The derived command's own: ``batch_size_for`` (a default
that depends on the device), ``video_annotation`` and ``video_drawing`` (what follows a
video's results in order: a tracker, and its drawing with trails), ``command_results`` (the
results passed through on their way out: a side file), and with ``Command.data`` a run over a
labelled data set (``evaluate``) instead of inputs.

This module is the interface only: the steps' one composition is ptcli.inference.steps; from
it the core derives the command's loop (``ptcli.inference.runner``: batching, decode workers,
torchrun sharing, progress, per-input errors), the whole command (``ptcli.cli.derived``), the
server (``ptcli.serving``), the export (``ptcli.exporting.derived``) and `ptcli eval`
(``ptcli.inference.evaluation``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

#: Input kinds: how a server reads a request for the predictor, and what its page offers.
IMAGE, TEXT, AUDIO, PROMPT = "image", "text", "audio", "prompt"


@dataclass(frozen=True)
class Source:
    """Where a model comes from, as the user named it: a checkpoint or export file, or a
    model name (the recipe's default when None) with optional local weights."""

    checkpoint: Path | None = None
    model: str | None = None
    weights: Path | None = None

    def describe(self, default: str | None = None) -> str:
        return str(self.checkpoint or self.model or default or "")


@dataclass(frozen=True)
class CommandRun:
    """What a derived command was given, for ``check_run`` and ``command_results``: the option
    values (settled), the inputs (paths or texts; an image recipe's videos apart), --data,
    -o and --overwrite."""

    options: dict
    inputs: list
    videos: list = ()
    data: Path | None = None
    output: Path | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class Sample:
    """A decoded input: ``data`` goes into the batch, ``meta`` (an image's size, its path) to
    ``postprocess`` with that input's output row. Both must pickle (decode workers)."""

    data: Any
    meta: Any = None


class Predictor:
    """One recipe's inference. Subclass it, set ``kind``, and write the five steps."""

    #: What the inputs are (image, text, audio, prompt): serve parses requests by it.
    kind: ClassVar[str] = IMAGE
    #: How decoded inputs batch: "stack" (one tensor) or "list" (different sizes, as detectors take).
    collate: ClassVar[str] = "stack"
    #: Whether ``forward`` computes gradients (an attack, a Grad-CAM): then it runs outside
    #: torch's inference mode.
    needs_gradients: ClassVar[bool] = False
    #: Whether ``stream`` gives results a piece at a time (serve offers server-sent events).
    streams: ClassVar[bool] = False
    #: The media type of ``encode``'s file, when the predictor has one ("image/png").
    media_type: ClassVar[str | None] = None
    #: File endings the command's folder and glob inputs are filtered by (empty: the recipe's
    #: data adapter's, else images').
    extensions: ClassVar[tuple[str, ...]] = ()
    #: What was loaded, for logs and pages: "classify-image (efficientnet_lite0)".
    title: str = ""
    #: The device ``forward`` runs on.
    device: Any = None
    #: Where the model came from (set by the core when it loads the predictor).
    source: Source = Source()
    #: "fp32", or "bf16" (--dtype): the core runs ``forward`` under torch.autocast then
    #: (ptcli.inference.precision).
    precision: str = "fp32"
    #: The recipe's options (ptcli.inference.options.Option), declared once: from them come the
    #: command's flags, models.yaml's ``options:`` and what a request may set.
    options: ClassVar[tuple] = ()
    #: The derived command's: --batch-size's default (None: ``batch_size_for`` the device),
    #: the progress bar's words, what befell the inputs that failed ("2 of 9 inputs could not
    #: be read").
    default_batch_size: ClassVar[int | None] = 16
    #: --workers' default (None: none for one batch, else up to 4).
    default_workers: ClassVar[int | None] = None
    progress: ClassVar[str | None] = None
    failed: ClassVar[str] = "failed"
    #: The key that names an input in --json: "input" (its path, or the text given), or "text"
    #: for a text recipe whose lines read {"text": ..., ...} and whose failures say "text N".
    input_key: ClassVar[str] = "input"
    #: What ``forward`` gives, for the check of a derived export (ptcli.exporting.derived):
    #: "classes" (scores per class: top-1 agreement), "numbers" or "image" (largest difference).
    output_kind: ClassVar[str] = "numbers"
    #: A predictor whose results carry a file (ptcli.inference.results.Artifact: a heat map, an
    #: upscaled image, a drawing): the file-name suffix ("_cam"). The derived command then takes
    #: -o DIR (default ``default_output``; None: no files unless asked) and --overwrite, and
    #: the core writes DIR/<name><suffix><file_ending>, a video's frames (``render``) to
    #: DIR/<name><suffix>.mp4; ``writing`` is True while it does (a drawing costs only then).
    writes: ClassVar[str | None] = None
    default_output: ClassVar[str | None] = None
    #: What the files are, in -o's messages ("the maps").
    written: ClassVar[str] = "the results"
    file_ending: str = ".png"
    writing: bool = False
    #: Whether ``load`` may run a hub model's own code, if the user lets it (--trust-remote-code).
    remote_code: ClassVar[bool] = False

    @property
    def option_values(self):
        """The options' values (ptcli.inference.options.Options), set by the core after ``load``
        (a request's own on a copy: read them in ``forward`` and ``postprocess``, not only in
        ``load``, for what a request may change); the declared defaults until then."""
        values = self.__dict__.get("_option_values")
        if values is None:
            from ptcli.inference.options import Options

            values = Options({option.name: option.default for option in type(self).options})
        return values

    @option_values.setter
    def option_values(self, values) -> None:
        self.__dict__["_option_values"] = values

    @classmethod
    def load(cls, source: Source, device, **options) -> Predictor:
        """The predictor with its model loaded on ``device``."""
        raise NotImplementedError

    def decode(self, item: Any) -> Sample:
        """One input (a path, bytes or a text) to a Sample; InputError if it cannot be read."""
        raise NotImplementedError

    def preprocess(self, datas: list) -> Any:
        """The ``data`` of a batch's samples to what ``forward`` takes (default: stacked tensors)."""
        if self.collate == "list":
            return list(datas)
        import torch

        return torch.stack(datas)

    def forward(self, batch: Any) -> Any:
        """The model on a batch (already on the device): one output row per input."""
        raise NotImplementedError

    def postprocess(self, row: Any, meta: Any) -> dict:
        """One output row to the result's JSON fields."""
        raise NotImplementedError

    # --- optional ---------------------------------------------------------------------------

    @classmethod
    def check_source(cls, recipe, source: Source, device: str) -> None:
        """The mistakes in where the model comes from that need no model (a missing file,
        another recipe's checkpoint, an unknown name, a malformed --device), before torch."""
        from ptcli.models.loading import check_request

        check_request(recipe, checkpoint=source.checkpoint, model=source.model, weights=source.weights, device=device)

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Checks across options, or a value's syntax, before anything loads (UsageError):
        each value is already typed and within its declared range."""

    @classmethod
    def check_run(cls, run: CommandRun) -> None:
        """The command's checks of its options against its inputs (an option only for videos,
        a side file that exists), before anything loads (UsageError)."""

    @classmethod
    def batch_size_for(cls, device, run: CommandRun) -> int:
        """--batch-size when not given, on ``device`` (a torch.device) for ``run`` (a --data run
        may batch otherwise): ``default_batch_size``."""
        return cls.default_batch_size or 1

    def video_annotation(self) -> Callable[[Any, Iterator], Iterator] | None:
        """What changes one video's (frame, fields) results in order, as ``annotation(info,
        results)`` (a tracker giving each detection its id), or None."""
        return None

    def video_drawing(self) -> Callable[[Any, dict], Any]:
        """The picture of a written video's frame (default ``render``); one with a ``start()``
        is started afresh for every video (a drawing that keeps trails)."""
        return self.render

    def command_results(self, results: Iterator, run: CommandRun) -> Iterator:
        """The command's (input, result) pairs on their way to the output, passed through (a
        side file written as they come, complete when the run ends)."""
        return results

    #: Whether this predictor, as loaded, sends each input through ``forward`` in pieces
    #: (``chunks`` and ``merge``); the command's loop and the server both honour it.
    chunked: bool = False
    #: Pieces per forward pass, when the predictor knows best (None: the batch size).
    chunk_batch: int | None = None

    def chunks(self, data: Any) -> list:
        """A preprocessed input's pieces (a large image's tiles), which the core batches through
        ``forward`` (pieces of one shape together)."""
        raise NotImplementedError

    def merge(self, data: Any, outputs: Iterator) -> Any:
        """The pieces' outputs, in ``chunks`` order, back into the input's one output row.
        ``outputs`` is lazy: each pass runs as merge takes its outputs."""
        raise NotImplementedError

    def file_suffix(self) -> str:
        """The suffix of the files this predictor's results are written to (default ``writes``)."""
        return self.writes or ""

    @classmethod
    def from_export(cls, state: dict, device) -> Predictor:
        """A predictor without its model, from the state a derived export carries (by default
        the JSON-able attributes it had: labels, sizes); the core makes the export its forward.
        The file is untrusted: only names that are neither private nor the class's own (its
        methods, the contract's settings such as ``file_ending``) are taken. A predictor whose
        state sizes its work (an image size) checks it here."""
        predictor = cls.__new__(cls)
        predictor.__dict__.update({name: value for name, value in state.items()
                                   if isinstance(name, str) and name.isidentifier() and not name.startswith("_")
                                   and not hasattr(cls, name)})
        return predictor

    def summary(self, count: int) -> str | None:
        """A closing warning for the command's run of ``count`` inputs (how many texts were cut
        to the model's limit), or None."""
        return None

    def describe(self, item: Any, result: dict) -> str:
        """One result as the command prints it without --json (default: its fields, one a line)."""
        import json

        return "\n".join([str(item), *(f"  {key}: {json.dumps(value)}" for key, value in result.items())])

    def evaluate(self, data: Path, *, batch_size: int) -> dict:
        """`ptcli eval CKPT DATA`: the model's scores on labelled ``data`` (the recipe's layout),
        as one JSON-ready report; ptcli.inference.evaluation has the pieces. Not written: the
        recipe's training task evaluates, if it can."""
        raise NotImplementedError

    def format_evaluation(self, report: dict) -> str:
        """The report as `ptcli eval` prints it without --json."""
        import json

        return json.dumps(report, indent=2)

    def warmup(self) -> Any | None:
        """An input (as ``decode`` takes it) to warm the model up with before a server says it
        is ready (None: no warm-up)."""
        return None

    def decoder(self) -> Callable[[Any], Sample] | None:
        """``decode`` as a small callable that pickles without the model, holding only what
        decoding needs of ``load`` (a size, a tokenizer): processes that hold no model decode
        with it (--engine ray's decode tasks). None, the default: inputs decode beside the
        model, in the processes that hold it."""
        return None

    def stream(self, sample: Sample, emit: Callable[[str], None]) -> dict:
        """Run one input, passing pieces of its result to ``emit`` as they are made (a language
        model's text); returns the result's fields as ``postprocess`` would. Only for
        predictors with ``streams = True``."""
        raise NotImplementedError

    def encode(self, result: dict) -> bytes | None:
        """The result as a file of ``media_type`` (an image's PNG), for clients that ask for it."""
        return None

    def render(self, image: Any, result: dict) -> Any:
        """The picture of one result for a video the command writes (-o): the frame (an RGB
        PIL image) with the result drawn on it, or the result's own picture. Default: the
        result's PNG ("png"), if it has one; None: the recipe writes no video."""
        import io

        from PIL import Image

        png = result.get("png")
        return None if png is None else Image.open(io.BytesIO(png)).convert("RGB")

    def predict(self, samples: list, *, chunk_batch: int | None = None) -> list[dict]:
        """decode's samples through preprocess, forward and postprocess (the server's step, and
        a video's frames'). A chunked predictor's pieces go ``chunk_batch`` a pass. A sample
        may come as ``Requested(sample, options)``: a request's own option values, run on a
        copy of the predictor that has them (samples with the same values together)."""
        if any(isinstance(s, Requested) for s in samples):
            return _predict_requested(self, samples, chunk_batch)
        from ptcli.inference.steps import predict_step

        return predict_step(self, samples, chunk_batch)


@dataclass(frozen=True)
class Requested:
    """A decoded input with the option values its request set (a sorted tuple of pairs)."""

    sample: Sample
    options: tuple = ()


def _predict_requested(predictor: Predictor, items: list, chunk_batch: int | None) -> list[dict]:
    """Each item on the predictor with its request's option values (a copy, where they change
    any), items whose values come to the same in one pass, results in the items' order."""
    from ptcli.inference.options import with_values

    current = predictor.option_values.as_dict()
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):
        asked = dict(item.options) if isinstance(item, Requested) else {}
        groups.setdefault(tuple(sorted({**current, **asked}.items(), key=lambda pair: pair[0])), []).append(index)
    results: list = [None] * len(items)
    for values, indices in groups.items():
        view = with_values(predictor, dict(values))
        samples = [items[i].sample if isinstance(items[i], Requested) else items[i] for i in indices]
        for index, result in zip(indices, view.predict(samples, chunk_batch=chunk_batch)):
            results[index] = result
    return results


def sample_image():
    """The packaged photo (a cat): what a server warms up on and exports are checked on
    when the user gives no --sample."""
    from importlib.resources import files

    return files("ptcli") / "data" / "sample.jpg"


def sample_image_bytes() -> bytes:
    return sample_image().read_bytes()
