"""The export a recipe gets from its Predictor alone (no ``Recipe.export``): the predictor's
``forward`` on a batch of what its ``decode`` and ``preprocess`` make of real inputs, checked
by the kind of output it gives (``Predictor.output_kind``: classes by top-1 agreement, numbers
and images by their largest difference). The file carries the predictor's plain state (its
JSON-able attributes: labels, sizes; ``export_state`` to choose), so that `--checkpoint
FILE.onnx` runs it again with nothing else: the core loads the predictor from that state
(``from_export``) and runs the file as its ``forward``. No code is stored or named.
"""

from __future__ import annotations

import json

from ptcli.errors import UsageError

#: How the check compares by the predictor's output kind (ptcli.exporting.spec's names).
_CHECKS = {"classes": "logits", "numbers": "image", "image": "image"}


def exportable_from_predictor(recipe, *, checkpoint, model, weights, samples):
    """The Exportable of ``recipe``'s Predictor, loaded from the source the user named."""
    import torch

    from ptcli.inference.contract import Source
    from ptcli.inference.runner import load_predictor
    from ptcli.refs import load_ref

    from .spec import Exportable, predictor_inputs, sidecar, variants

    cls = load_ref(recipe.predictor)
    if cls.collate != "stack" or cls.streams or cls.chunked:
        raise UsageError(f"recipe {recipe.name} does not export: its inputs do not stack into one tensor "
                         "(it declares no export of its own)")
    predictor = load_predictor(recipe, Source(checkpoint, model, weights), torch.device("cpu"))
    items = list(samples) or ([predictor.warmup()] if predictor.warmup() is not None else [])
    if not items:
        raise UsageError(f"recipe {recipe.name} has no sample input to export with; give one with --sample FILE")
    inputs = predictor_inputs(predictor, items)

    def vary(tensor, k):  # a distinct row for each reuse: a mix-up of rows would show
        if k == 0 or not tensor.is_floating_point():
            return tensor
        return tensor.flip(-1) if k % 2 else tensor.roll(k, dims=-1)

    def sample(n: int):
        return (torch.stack(variants(inputs, n, vary)),)

    state = export_state(predictor)
    meta = sidecar(recipe.name, checkpoint, model=model, predictor_state=state, derived="predictor",
                   option_values=predictor.option_values.as_dict())
    return Exportable(module=PredictorForward(predictor), input_names=("input",), output_names=("output",),
                      sample=sample, meta=meta, output=_CHECKS.get(cls.output_kind, "image"),
                      torchscript_methods=("trace",), onnx_exporter="dynamo")


def export_state(predictor) -> dict:
    """What the predictor needs beside its model to run an export of its forward: its own
    ``export_state()``, or every instance attribute that JSON can hold (labels, sizes, names)."""
    own = getattr(predictor, "export_state", None)
    if callable(own):
        return dict(own())
    state = {}
    for name, value in vars(predictor).items():
        if name.startswith("_") or hasattr(type(predictor), name):  # what from_export would not take back
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        state[name] = value
    return state


class PredictorForward:
    """The predictor's forward as a module that torch exports: its modules registered so that
    their weights are the module's (built lazily: torch is imported only here)."""

    def __new__(cls, predictor):
        import torch

        class _Forward(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.predictor = [predictor]  # a list: not registered, not traced into
                for name, value in vars(predictor).items():
                    if isinstance(value, torch.nn.Module):
                        self.add_module(f"m_{name}", value)

            def forward(self, batch):
                out = self.predictor[0].forward(batch)
                if not isinstance(out, torch.Tensor):
                    raise UsageError(f"{type(self.predictor[0]).__name__}.forward gives {type(out).__name__}, not a "
                                     "tensor: it exports only with an Exportable of its own (Recipe.export)")
                return out

        return _Forward()
