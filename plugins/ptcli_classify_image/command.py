"""`ptcli classify-image`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import (DeviceOption, DtypeOption, EndOption, JsonOption, ListModelsOption, StartOption,
                               VidStrideOption, WorkersOption,
                               batch_size_option, checkpoint_option, model_option, paths_argument, weights_option)

from . import RECIPE


Paths = paths_argument("Images or videos: files, folders (searched recursively), glob patterns, image sequences (frames/%05d.png), stream URLs or a webcam's number.")
Model = model_option("efficientnet_lite0 (default), a torchvision classifier (resnet50, vgg16, mobilenet_v3_large, ...) or timm/<name>.")
Checkpoint = checkpoint_option("A ptcli checkpoint (NAME.safetensors with its NAME.json sidecar).")


def classify_image(
    paths: Paths = None,
    model: Model = None,
    weights: weights_option() = None,
    checkpoint: Checkpoint = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Predictions per image.")] = 5,
    batch_size: batch_size_option("Images per forward pass.") = 16,
    workers: WorkersOption = None,
    defense: Annotated[
        str | None, typer.Option(metavar="F", help="An input filter before the model, against adversarial images: jpeg:75, median:3 or bits:4 (measure it with `ptcli defend`).")
    ] = None,
    vid_stride: VidStrideOption = 1,
    start: StartOption = None,
    end: EndOption = None,
    dtype: DtypeOption = "fp32",
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    list_models: ListModelsOption = False,
) -> None:
    """Classify images with an ImageNet model (EfficientNet-Lite0 by default, offline) or a
    fine-tuned checkpoint. Prints the top-k labels per image or video frame; with --json, one
    JSON object per image or frame per line (a frame's with its "frame" index and "time"). Unreadable images are reported and skipped; the exit code is then 1."""
    from ptcli.devices import resolve_device
    from ptcli.inference.precision import check_dtype
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import run
    from itertools import chain

    from ptcli.video.runner import VideoOptions, video_results
    from ptcli.video.sources import split_inputs
    from ptcli.models.loading import check_request
    from ptcli.cli.options import list_models as print_models
    from ptcli.inference.results import emit_results, prediction_format

    from .models import DEFAULT_MODEL
    from .predictor import ImageClassifier

    if list_models:
        print_models(RECIPE, json_output)
        return
    if not paths:
        raise UsageError("give at least one image file, folder or glob (see `ptcli classify-image --help`)")
    if defense is not None:
        from ptcli.vision.defenses import parse_filter

        parse_filter(defense)  # a malformed filter is a usage error before any model loads
    video = VideoOptions(vid_stride, start, end)
    inputs, videos = split_inputs(paths, RECIPE.data_adapter.extensions)
    check_request(RECIPE, checkpoint=checkpoint, model=model, weights=weights, default=DEFAULT_MODEL, device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    precision = check_dtype(RECIPE, dtype, target)
    predictor = ImageClassifier.load(Source(checkpoint, model, weights), target, top_k=top_k, defense=defense)
    predictor.precision = precision
    results = run(predictor, inputs, batch_size=batch_size, workers=workers, description="classifying") if inputs else ()
    frames = video_results(predictor, videos, video, batch_size=batch_size, description="classifying")
    emit_results(chain(results, frames), prediction_format(fields=lambda item, result: result),
                 total=len(inputs) + len(videos), json_output=json_output)
