"""`ptcli explain`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import (DeviceOption, EndOption, JsonOption, StartOption, VidStrideOption, checkpoint_option, model_option,
                               paths_argument, weights_option)

from . import RECIPE


def explain(
    paths: paths_argument("Images or videos: files, folders, globs, image sequences (frames/%05d.png), stream URLs or a webcam's number.") = None,
    model: model_option("An image classifier by name (default: efficientnet_lite0, offline).") = None,
    weights: weights_option("Local weights for --model.") = None,
    checkpoint: checkpoint_option("A classify-image checkpoint.") = None,
    method: Annotated[str, typer.Option(metavar="cam|gradcam|gradcam++", help="cam (networks ending in global pooling and one Linear), gradcam (any CNN), gradcam++.")] = "gradcam",
    class_name: Annotated[str | None, typer.Option("--class", metavar="LABEL", help="Explain this class [default: the top prediction].", show_default=False)] = None,
    layer: Annotated[str | None, typer.Option(metavar="NAME", help="The layer whose activations are mapped [default: the last convolution].", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Where DIR/<name>_cam.png goes: the image with the map over it and its colour scale; a video's maps go to DIR/<name>_cam.mp4.")] = Path("."),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files in DIR.")] = False,
    vid_stride: VidStrideOption = 1,
    start: StartOption = None,
    end: EndOption = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Class activation maps as the book draws them: where in each image the classifier's
    evidence for a class lies, as a heat map over the original image (red: strong). The map
    covers the part of the image the model sees (its centre crop). With --json, one object
    per image: {"input", "output", "label", "score", "layer"}."""
    from itertools import chain

    from ptcli.inference.inputs import output_folder
    from ptcli.video.runner import VideoOptions, video_results
    from ptcli.video.sources import split_inputs
    from ptcli.inference.results import ResultFormat, emit_results
    from ptcli.inference.runner import run_to_files
    from ptcli.plugins.capabilities import image_classifier

    from .cam import METHODS
    from .predictor import Explainer

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
    if not paths:
        raise UsageError("give at least one image file, folder or glob (see `ptcli explain --help`)")
    output_folder(output, "the maps")
    from ptcli.vision.imaging import IMAGE_EXTENSIONS

    video = VideoOptions(vid_stride, start, end)
    inputs, videos = split_inputs(paths, IMAGE_EXTENSIONS)
    classifier, target = image_classifier(model=model, weights=weights, checkpoint=checkpoint, device=device,
                                          devices=RECIPE.devices.devices)
    explainer = Explainer(classifier, target, method=method, class_name=class_name, layer=layer)
    results = run_to_files(explainer, inputs, output=output, suffix="_cam", overwrite=overwrite,
                           description="explaining") if inputs else ()
    frames = video_results(explainer, videos, video, batch_size=1, output=output, suffix="_cam", overwrite=overwrite,
                           description="explaining")

    fmt = ResultFormat(human=lambda path, r: f"{path} -> {r['output']}: {r['label']} ({r['score']:.3f}), layer {r['layer']}",
                       fields=lambda path, r: r, failed="could not be explained")
    emit_results(chain(results, frames), fmt, total=len(inputs) + len(videos), json_output=json_output)
