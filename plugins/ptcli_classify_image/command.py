"""`ptcli classify-image`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.options import DeviceOption, JsonOption

from . import RECIPE


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
    defense: Annotated[
        str | None, typer.Option(metavar="F", help="An input filter before the model, against adversarial images: jpeg:75, median:3 or bits:4 (measure it with `ptcli defend`).")
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
    from ptcli.loading import check_request
    from ptcli.results import emit_results, prediction_format, top_predictions

    from .data import LoadImage, Preprocess
    from .models import DEFAULT_MODEL, load_classifier

    if list_models:
        _list_models(json_output)
        return
    if not paths:
        raise UsageError("give at least one image file, folder or glob (see `ptcli classify-image --help`)")
    in_filter = None
    if defense is not None:
        from ptcli.defenses import parse_filter

        in_filter = parse_filter(defense)
    adapter = RECIPE.data_adapter
    inputs = expand_inputs(paths, adapter.extensions)
    check_request(RECIPE, checkpoint=checkpoint, model=model, weights=weights, default=DEFAULT_MODEL, device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    net, labels, preprocessing = load_classifier(model, weights, checkpoint)
    import torch

    # channels_last: convolutions run faster so (EfficientNet-Lite0 on 2 CPU cores: 10.3 against
    # 14.6 ms a forward at batch 1, 9.5 against 17.4 ms an image at 16; bench/classify_throughput.py).
    net = net.to(target).eval().to(memory_format=torch.channels_last)
    k = min(top_k, len(labels))

    preprocess = Preprocess(preprocessing)

    def forward(batch):
        if in_filter is not None:  # batches are pixels in [0, 1]: filter, then normalise
            batch = preprocess.normalize(in_filter(batch))
        return net(batch.contiguous(memory_format=torch.channels_last)).float().softmax(dim=-1).cpu()

    def postprocess(probabilities):
        return top_predictions(probabilities, labels, k)

    results = run_batched_with_progress(
        "classifying",
        inputs,
        load=LoadImage(adapter, preprocess, pixels_only=in_filter is not None),
        forward=forward,
        postprocess=postprocess,
        device=target,
        batch_size=batch_size,
        workers=workers,
    )
    emit_results(results, prediction_format(), total=len(inputs), json_output=json_output)
