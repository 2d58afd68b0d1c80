"""What a recipe declares to be exported: ``Recipe.export`` names a function
``(checkpoint, model, weights, samples) -> Exportable``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptcli.inference.contract import sample_image  # noqa: F401 (the photo exports are checked on)

#: Output kinds the core knows how to compare; a recipe may give its own ``compare`` instead.
LOGITS, IMAGE = "logits", "image"


@dataclass
class Exportable:
    """One model, ready to export."""

    #: A torch module: positional tensors named ``input_names`` in, a tensor (or a tuple of
    #: tensors named ``output_names``) out. The core puts it in eval mode.
    module: Any
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    #: ``sample(n)``: real inputs of the recipe for a batch of n (distinct where it can), as a
    #: tuple matching ``input_names``. With ``batched=False``, a list of single inputs.
    sample: Callable[[int], Any]
    #: What the file carries, as a checkpoint's sidecar does: recipe, model, classes,
    #: preprocessing, and anything the recipe needs to run it again (a tokenizer).
    meta: dict
    #: Dynamic dimensions other than the batch: {input or output name: {axis: name}}.
    dynamic: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    #: (min, max) of a dynamic dimension, by name, where the model bounds it (a position table).
    dim_bounds: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: A dynamic dimension that must be a multiple of a number (RRDBNet x2 folds 2x2 blocks).
    dim_multiples: Mapping[str, int] = field(default_factory=dict)
    #: Whether dimension 0 of every input and output is the batch (False: one input per call).
    batched: bool = True
    #: "logits", "image", or ``compare(eager, exported, half) -> (passed, report dict, why)``.
    output: str | Callable[..., tuple[bool, dict, str]] = LOGITS
    #: Formats this model cannot take, with the one-line reason.
    unsupported: Mapping[str, str] = field(default_factory=dict)
    #: TorchScript methods it takes, the first the default.
    torchscript_methods: Sequence[str] = ("trace", "script")
    #: The ONNX exporter: "dynamo" (torch.export based) or "torchscript" (the tracing exporter,
    #: for models dynamo cannot export).
    onnx_exporter: str = "dynamo"
    #: A module to script instead of ``module`` (with --method script), when they differ.
    scriptable: Any = None
    #: The key, in its Recipe's ``runtimes``, of the wrapper the loaded export runs through in the
    #: recipe's command (None: as is). The declared "module:function" itself is taken too.
    runtime: str | None = None
    #: Modules to import before the file loads while it is checked: those that register the
    #: custom ops it calls (torchvision's nms and roi_align); loads elsewhere import the
    #: Recipe's ``model_ops``.
    imports: tuple[str, ...] = ()
    #: The eager model the check compares with, when ``module`` is a rewrite of it made to
    #: export (None: ``module`` itself).
    reference: Any = None
    #: How an INT8 export quantizes: "static" (activation ranges calibrated on real inputs: conv
    #: nets) or "dynamic" (ranges taken per input as it runs: recurrent and transformer text).
    quantize: str = "static"
    #: How many distinct inputs ``sample`` draws from before it varies them (None: one per
    #: sample file; a text file holds one text a line).
    distinct: int | None = None
    #: File endings --calibration folders are searched for (empty: the recipe's data files, or images).
    calibration_endings: tuple[str, ...] = ()


def sidecar(recipe: str, checkpoint, **fields) -> dict:
    """What an export carries: a checkpoint's own sidecar when it comes from one (model_args,
    tokenizer, category ids: all that the recipe needs to run it), else ``fields``."""
    meta = {"recipe": recipe, **fields}
    if checkpoint is not None:
        from ptcli.models.sidecars import read_sidecar

        meta = {**meta, **read_sidecar(checkpoint)}
    for key in ("format", "format_version", "created", "versions"):
        meta.pop(key, None)
    return meta




def predictor_inputs(predictor, items) -> list:
    """Each item (a path, bytes, a text) as the model's input for one row, through the
    predictor's own decode and preprocess: an export is checked on exactly what the command
    feeds the eager model."""
    return [predictor.preprocess([predictor.decode(item).data])[0] for item in items]


def variants(items: list, n: int, vary) -> list:
    """n inputs from a few: item i % len, changed by ``vary(item, k)`` for its k-th reuse, so
    that a batch holds distinct inputs (a mix-up of rows would show)."""
    return [vary(items[i % len(items)], i // len(items)) for i in range(n)]
