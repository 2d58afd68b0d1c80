"""`ptcli detect`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import InputError, UsageError
from ptcli.options import DeviceOption, JsonOption

from . import RECIPE


def _list_models(as_json: bool) -> None:
    from ptcli.output import emit, emit_json

    for name in RECIPE.model_registry.names():
        spec = RECIPE.model_registry.get(name)
        emit_json({"name": name, "description": spec.description}) if as_json else emit(f"{name:<36} {spec.description}")


def parse_classes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise UsageError("--classes needs at least one class name (comma-separated)")
    return names


def detect(
    paths: Annotated[list[str] | None, typer.Argument(metavar="PATH", help="Image files, folders (searched recursively) or glob patterns.", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="NAME", help="fasterrcnn_resnet50_fpn_v2 (default), maskrcnn_resnet50_fpn_v2, retinanet_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn, ... (--list-models); COCO weights are downloaded once.", show_default=False)] = None,
    weights: Annotated[Path | None, typer.Option(metavar="FILE", help="A state dict for --model (.pth/.safetensors); its number of classes is read from it.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(metavar="CKPT", help="A checkpoint from `ptcli train recipes/coco-fasterrcnn.yaml` (runs offline).")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, metavar="P", help="Lowest score reported.")] = 0.5,
    classes: Annotated[str | None, typer.Option(metavar="A,B", help="Report only these classes (names, comma-separated).")] = None,
    max_detections: Annotated[int, typer.Option(min=1, metavar="N", help="Most detections per image.")] = 100,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR", help="Write DIR/<name>_detect.png per image, with boxes, labels, scores (and masks) drawn.")] = None,
    masks: Annotated[bool | None, typer.Option("--masks/--no-masks", help="Instance masks (COCO RLE in --json, drawn with -o) [default: when the model has them].", show_default=False)] = None,
    slice_size: Annotated[int | None, typer.Option("--slice", min=64, metavar="N", help="Large images: detect in N-pixel tiles (batched) plus the whole image, then merge. Finds small objects the model's resize would lose.")] = None,
    slice_overlap: Annotated[float, typer.Option(min=0.0, max=0.9, metavar="F", help="Fraction of a tile its neighbours share.")] = 0.2,
    slice_merge: Annotated[str, typer.Option(metavar="greedy|nms", help="How tiles' boxes merge: greedy (union of boxes overlapping by intersection over the smaller, as SAHI) or nms (IoU).")] = "greedy",
    batch_size: Annotated[int | None, typer.Option(min=1, metavar="N", help="Images (or, with --slice, tiles) per forward pass [default: 4 on CUDA, 1 on the CPU, where batches make a detector slower per image].", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(min=0, metavar="N", help="Image-decoding processes [default: 0 for one batch, else up to 4].")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files in -o DIR.")] = False,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    list_models: Annotated[bool, typer.Option("--list-models", help="List model names and exit.")] = False,
) -> None:
    """Detect objects in images with a torchvision detector (Faster R-CNN v2 on COCO by default)
    or a fine-tuned checkpoint. Prints each image's objects: label, score and box in the
    image's pixels; --json gives one object per image, boxes as COCO [x, y, w, h], masks as
    COCO RLE. Unreadable images are reported and skipped; the exit code is then 1."""
    from ptcli.batching import as_list, run_batched
    from ptcli.devices import resolve_device
    from ptcli.imaging import save_png, to_pixels
    from ptcli.inputs import expand_inputs, output_folder
    from ptcli.loading import check_request
    from ptcli.output import progress
    from ptcli.results import Failed, ResultFormat, emit_results

    from .detections import Detections
    from .images import LoadForDetection
    from .models import DEFAULT_MODEL, configure_inference, has_masks, load_detector
    from .rendering import detection_fields, draw, human_lines
    from .slicing import MERGES, detect_sliced, tile_grid

    if list_models:
        _list_models(json_output)
        return
    if not paths:
        raise UsageError("give at least one image file, folder or glob (see `ptcli detect --help`)")
    if slice_merge not in MERGES:
        raise UsageError(f"--slice-merge must be one of {', '.join(MERGES)} (got {slice_merge!r})")
    wanted = parse_classes(classes)
    if output is not None:
        output_folder(output, "the drawn images")
    adapter = RECIPE.data_adapter
    inputs = expand_inputs(paths, adapter.extensions)
    check_request(RECIPE, checkpoint=checkpoint, model=model, weights=weights, default=DEFAULT_MODEL, device=device)
    import torch

    target = resolve_device(device, RECIPE.devices.devices)
    if batch_size is None:
        batch_size = default_batch_size(target)
    loaded = load_detector(model, weights, checkpoint)
    net, categories = loaded.model, loaded.categories
    if masks and not has_masks(net):
        raise UsageError(f"{loaded.source} predicts no masks; use --model maskrcnn_resnet50_fpn_v2 or drop --masks")
    with_masks = has_masks(net) if masks is None else masks
    selected = categories.labels_for(wanted) if wanted else None
    configure_inference(net, threshold, max_detections)
    net = net.to(target).eval()

    def run(images: list) -> list[Detections]:
        found = []
        for out in net(images):
            if not with_masks:
                out.pop("masks", None)
            found.append(Detections.from_output(out))
        return found

    def result(path: Path, found: Detections, image, width: int, height: int) -> dict:
        found = found.filtered(threshold, selected, max_detections)
        fields = {"width": width, "height": height, "detections": detection_fields(found, categories, width, height)}
        if output is not None:
            destination = output / f"{path.stem}_detect.png"
            if destination.exists() and not overwrite:
                raise InputError(f"{destination} exists; pass --overwrite to replace it")
            save_png(draw(image, found, categories), destination)
            fields["output"] = str(destination)
        return fields

    def whole_images():
        def forward(batch):
            found = run(batch)
            drawn = [(image * 255).round().to(torch.uint8).cpu() for image in batch] if output is not None else [None] * len(batch)
            return list(zip(found, drawn))

        def postprocess(row, meta):
            found, image = row
            try:
                return result(meta["path"], found, image, meta["width"], meta["height"])
            except InputError as exc:
                return Failed(str(exc))

        with progress() as bar:
            task = bar.add_task("detecting", total=len(inputs))
            for item in run_batched(inputs, load=LoadForDetection(adapter), forward=forward,
                                    postprocess=postprocess, device=target, batch_size=batch_size, workers=workers,
                                    collate=as_list):
                bar.advance(task)
                yield item

    def sliced_images():
        with progress() as bar, torch.inference_mode():
            for path in inputs:
                try:
                    picture = adapter.read(path)
                except InputError as exc:
                    yield path, Failed(str(exc))
                    continue
                image = to_pixels(picture).to(target)
                tiles = len(tile_grid(picture.width, picture.height, slice_size, slice_overlap))
                task = bar.add_task(f"{path.name} ({tiles} tiles)", total=tiles)
                found = detect_sliced(image, run, size=slice_size, overlap=slice_overlap, batch_size=batch_size,
                                      merge=slice_merge, on_tiles=lambda n: bar.advance(task, n))
                bar.remove_task(task)
                drawn = (image * 255).round().to(torch.uint8).cpu() if output is not None else None
                try:
                    yield path, result(path, found, drawn, picture.width, picture.height)
                except InputError as exc:
                    yield path, Failed(str(exc))

    fmt = ResultFormat(human=human_lines, fields=lambda path, r: r, failed="could not be read")
    emit_results(sliced_images() if slice_size else whole_images(), fmt, total=len(inputs), json_output=json_output)


def default_batch_size(device) -> int:
    """4 on a GPU. On the CPU a batch is slower per image than one image at a time (measured on 2
    cores: 1.59 images/s one by one, 1.02 in batches of 4; the backbone's convolutions take
    twice as long per image in a batch of 8), so 1."""
    return 4 if device.type == "cuda" else 1

