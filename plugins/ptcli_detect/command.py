"""`ptcli detect`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import DeviceOption, JsonOption, ListModelsOption, WorkersOption, checkpoint_option, model_option, paths_argument, weights_option

from . import RECIPE


def parse_classes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise UsageError("--classes needs at least one class name (comma-separated)")
    return names


def detect(
    paths: paths_argument("Image files, folders (searched recursively) or glob patterns.") = None,
    model: model_option("fasterrcnn_resnet50_fpn_v2 (default), maskrcnn_resnet50_fpn_v2, retinanet_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn, ... (--list-models); COCO weights are downloaded once.") = None,
    weights: weights_option("A state dict for --model (.pth/.safetensors); its number of classes is read from it.") = None,
    checkpoint: checkpoint_option("A checkpoint from `ptcli train recipes/coco-fasterrcnn.yaml` (runs offline).") = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, metavar="P", help="Lowest score reported.")] = 0.5,
    classes: Annotated[str | None, typer.Option(metavar="A,B", help="Report only these classes (names, comma-separated).")] = None,
    max_detections: Annotated[int, typer.Option(min=1, metavar="N", help="Most detections per image.")] = 100,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR", help="Write DIR/<name>_detect.png per image, with boxes, labels, scores (and masks) drawn.")] = None,
    masks: Annotated[bool | None, typer.Option("--masks/--no-masks", help="Instance masks (COCO RLE in --json, drawn with -o) [default: when the model has them].", show_default=False)] = None,
    slice_size: Annotated[int | None, typer.Option("--slice", min=64, metavar="N", help="Large images: detect in N-pixel tiles (batched) plus the whole image, then merge. Finds small objects the model's resize would lose.")] = None,
    slice_overlap: Annotated[float, typer.Option(min=0.0, max=0.9, metavar="F", help="Fraction of a tile its neighbours share.")] = 0.2,
    slice_merge: Annotated[str, typer.Option(metavar="greedy|nms", help="How tiles' boxes merge: greedy (boxes overlapping by intersection over the smaller join the best one, which grows only where a tile edge cut it) or nms (IoU).")] = "greedy",
    batch_size: Annotated[int | None, typer.Option(min=1, metavar="N", help="Images (or, with --slice, tiles) per forward pass [default: 4 on CUDA, 1 on the CPU, where batches make a detector slower per image].", show_default=False)] = None,
    workers: WorkersOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files in -o DIR.")] = False,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    list_models: ListModelsOption = False,
) -> None:
    """Detect objects in images with a torchvision detector (Faster R-CNN v2 on COCO by default)
    or a fine-tuned checkpoint. Prints each image's objects: label, score and box in the
    image's pixels; --json gives one object per image, boxes as COCO [x, y, w, h], masks as
    COCO RLE. Unreadable images are reported and skipped; the exit code is then 1."""
    from ptcli.devices import resolve_device
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import run
    from ptcli.inference.inputs import expand_inputs, output_folder
    from ptcli.models.loading import check_request
    from ptcli.cli.options import list_models as print_models
    from ptcli.inference.results import ResultFormat, emit_results

    from .models import DEFAULT_MODEL
    from .predictor import Detector
    from .rendering import human_lines
    from .slicing import MERGES

    if list_models:
        print_models(RECIPE, json_output, describe=True)
        return
    if not paths:
        raise UsageError("give at least one image file, folder or glob (see `ptcli detect --help`)")
    if slice_merge not in MERGES:
        raise UsageError(f"--slice-merge must be one of {', '.join(MERGES)} (got {slice_merge!r})")
    wanted = parse_classes(classes)
    if output is not None:
        output_folder(output, "the drawn images")
    inputs = expand_inputs(paths, RECIPE.data_adapter.extensions)
    check_request(RECIPE, checkpoint=checkpoint, model=model, weights=weights, default=DEFAULT_MODEL, device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    if batch_size is None:
        batch_size = default_batch_size(target)
    predictor = Detector.load(Source(checkpoint, model, weights), target, threshold=threshold, classes=wanted,
                              max_detections=max_detections, masks=masks, output=output, overwrite=overwrite,
                              slice_size=slice_size, slice_overlap=slice_overlap, slice_merge=slice_merge)
    # With --slice, --batch-size counts tiles: the core batches each image's tiles.
    results = run(predictor, inputs, batch_size=batch_size, workers=workers, description="detecting")
    fmt = ResultFormat(human=human_lines, fields=lambda path, r: r, failed="could not be read")
    emit_results(results, fmt, total=len(inputs), json_output=json_output)


def default_batch_size(device) -> int:
    """4 on a GPU. On the CPU a batch is slower per image than one image at a time (measured on 2
    cores: 1.59 images/s one by one, 1.02 in batches of 4; the backbone's convolutions take
    twice as long per image in a batch of 8), so 1."""
    return 4 if device.type == "cuda" else 1

