"""`ptcli classify-image`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import CheckpointError, UsageError
from ptcli.options import DeviceOption, JsonOption

from . import RECIPE


def load_classifier(model_name: str | None, weights: Path | None, checkpoint: Path | None):
    """(model, labels, preprocessing) from a checkpoint, or a named model with its default or
    given weights."""
    from ptcli.checkpoints import load_checkpoint, load_state_dict, load_weights_into
    from ptcli.weights import local_weights, resolve

    from .models import DEFAULT_MODEL, build_model

    registry = RECIPE.model_registry
    if checkpoint is not None:
        if model_name is not None or weights is not None:
            raise UsageError("--checkpoint already names its model and weights; drop --model/--weights")
        ckpt = load_checkpoint(checkpoint, recipe=RECIPE.name)
        spec = registry.get(ckpt.model)
        if not ckpt.classes:
            raise UsageError(f"checkpoint {checkpoint} lists no classes; it cannot label predictions")
        try:
            model = build_model(spec, len(ckpt.classes), **(ckpt.meta.get("model_args") or {}))
        except TypeError as exc:  # model_args written by another version of the recipe
            raise CheckpointError(f"checkpoint {checkpoint}: cannot rebuild its model from model_args "
                                  f"{ckpt.meta.get('model_args')}: {exc}") from exc
        load_weights_into(model, ckpt.state_dict, source=f"checkpoint {checkpoint}")
        return model, ckpt.classes, ckpt.preprocessing or dict(spec.preprocessing)
    spec = registry.get(model_name or DEFAULT_MODEL)
    if weights is not None:
        path = local_weights(weights)
    elif spec.weights is not None:
        path = resolve(spec.weights)
    else:
        raise UsageError(f"model {spec.name} has no published weights; pass --weights PATH or --checkpoint CKPT")
    model = spec.build()
    load_weights_into(model, load_state_dict(path), source=f"weights {path}", adapt=spec.adapt_state_dict)
    return model, list(spec.labels()), dict(spec.preprocessing)



def _list_models(as_json: bool) -> None:
    from ptcli.output import emit, emit_json

    for name in RECIPE.model_registry.names():
        emit_json({"name": name}) if as_json else emit(name)


def classify_image(
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Image files, folders (searched recursively) or glob patterns.", show_default=False, metavar="PATH"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", metavar="NAME", help="efficientnet_lite0 (default), a torchvision classifier "
                     "(resnet50, vgg16, mobilenet_v3_large, ...) or timm/<name>.", show_default=False),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Local weights file (.safetensors, .pt, .pth) for --model.")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(metavar="CKPT", help="A ptcli checkpoint (NAME.safetensors with its NAME.json sidecar).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Predictions per image.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="Images per forward pass.")] = 16,
    workers: Annotated[
        int | None, typer.Option(min=0, metavar="N", help="Image-decoding processes [default: 0 for one batch, else up to 4].")
    ] = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    list_models: Annotated[bool, typer.Option("--list-models", help="List model names and exit.")] = False,
) -> None:
    """Classify images with an ImageNet model (EfficientNet-Lite0 by default, offline) or a
    fine-tuned checkpoint. Prints the top-k labels per image; with --json, one JSON object per
    image per line. Unreadable images are reported and skipped; the exit code is then 1."""
    from ptcli.batching import run_batched_with_progress
    from ptcli.devices import resolve_device
    from ptcli.inputs import expand_inputs
    from ptcli.output import emit_file_predictions

    from .data import LoadImage, Preprocess

    if list_models:
        _list_models(json_output)
        return
    if not paths:
        raise UsageError("give at least one image file, folder or glob (see `ptcli classify-image --help`)")
    target = resolve_device(device, RECIPE.devices.devices)
    adapter = RECIPE.data_adapter
    inputs = expand_inputs(paths, adapter.extensions)
    net, labels, preprocessing = load_classifier(model, weights, checkpoint)
    net = net.to(target).eval()
    k = min(top_k, len(labels))

    def forward(batch):
        return net(batch).float().softmax(dim=-1).cpu()

    def postprocess(probabilities):
        scores, indices = probabilities.topk(k)
        return [
            {"label": labels[i], "index": i, "score": round(s, 6)}
            for s, i in zip(scores.tolist(), indices.tolist())
        ]

    results = run_batched_with_progress(
        "classifying",
        inputs,
        load=LoadImage(adapter, Preprocess(preprocessing)),
        forward=forward,
        postprocess=postprocess,
        device=target,
        batch_size=batch_size,
        workers=workers,
    )
    emit_file_predictions(results, total=len(inputs), json_output=json_output)
