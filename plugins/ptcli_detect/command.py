"""`ptcli detect`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import (DeviceOption, DtypeOption, EndOption, JsonOption, ListModelsOption, StartOption,
                               VidStrideOption, WorkersOption,
                               checkpoint_option, model_option, paths_argument, weights_option)

from . import RECIPE


def detect(
    paths: paths_argument("Images or videos: files, folders (searched recursively), glob patterns, image sequences (frames/%05d.png), stream URLs (rtsp://, http://) or a webcam's number.") = None,
    model: model_option("fasterrcnn_resnet50_fpn_v2 (default), maskrcnn_resnet50_fpn_v2, retinanet_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn, ... (--list-models); COCO weights are downloaded once.") = None,
    weights: weights_option("A state dict for --model (.pth/.safetensors); its number of classes is read from it.") = None,
    checkpoint: checkpoint_option("A checkpoint from `ptcli train recipes/coco-fasterrcnn.yaml` (runs offline).") = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, metavar="P", help="Lowest score reported.")] = 0.5,
    classes: Annotated[str | None, typer.Option(metavar="A,B", help="Report only these classes (names, comma-separated).")] = None,
    max_detections: Annotated[int, typer.Option(min=1, metavar="N", help="Most detections per image.")] = 100,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR", help="Write DIR/<name>_detect.png per image, with boxes, labels, scores (and masks) drawn; DIR/<name>_detect.mp4 (or the source's container) per video, with track ids and trails, and the source's audio.")] = None,
    masks: Annotated[bool | None, typer.Option("--masks/--no-masks", help="Instance masks (COCO RLE in --json, drawn with -o) [default: when the model has them].", show_default=False)] = None,
    slice_size: Annotated[int | None, typer.Option("--slice", min=64, metavar="N", help="Large images: detect in N-pixel tiles (batched) plus the whole image, then merge. Finds small objects the model's resize would lose.")] = None,
    slice_overlap: Annotated[float, typer.Option(min=0.0, max=0.9, metavar="F", help="Fraction of a tile its neighbours share.")] = 0.2,
    slice_merge: Annotated[str, typer.Option(metavar="greedy|nms", help="How tiles' boxes merge: greedy (boxes overlapping by intersection over the smaller join the best one, which grows only where a tile edge cut it) or nms (IoU).")] = "greedy",
    batch_size: Annotated[int | None, typer.Option(min=1, metavar="N", help="Images (or, with --slice, tiles) per forward pass [default: 4 on CUDA, 1 on the CPU, where batches make a detector slower per image].", show_default=False)] = None,
    workers: WorkersOption = None,
    track: Annotated[str | None, typer.Option("--track", metavar="[bytetrack|botsort|ocsort]", help="Videos: follow objects from frame to frame; each detection gets a track_id (bare --track: bytetrack). The detector then keeps the lower scores the tracker uses (down to 0.5 for bytetrack, 0.3 for botsort), and a frame reports the objects the tracker follows, whatever their score.", show_default=False)] = None,
    mot: Annotated[Path | None, typer.Option("--mot", metavar="FILE", help="With --track: also write the tracks as MOTChallenge text (frame from 1, id, x, y, w, h, score, class), for `ptcli eval FILE gt.txt`.", show_default=False)] = None,
    vid_stride: VidStrideOption = 1,
    start: StartOption = None,
    end: EndOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files in -o DIR.")] = False,
    dtype: DtypeOption = "fp32",
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    list_models: ListModelsOption = False,
) -> None:
    """Detect objects in images and videos with a torchvision detector (Faster R-CNN v2 on COCO
    by default) or a fine-tuned checkpoint. Prints each image's (or video frame's) objects:
    label, score and box in pixels; --json gives one object per image or frame ("frame" and
    "time" for videos), boxes as COCO [x, y, w, h], masks as COCO RLE. --track follows objects
    through a video. Unreadable inputs are reported and skipped; the exit code is then 1."""
    from itertools import chain

    from ptcli.devices import resolve_device
    from ptcli.inference.precision import check_dtype
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import load_predictor, run, run_to_files
    from ptcli.inference.inputs import output_folder
    from ptcli.models.loading import check_request
    from ptcli.cli.options import list_models as print_models
    from ptcli.inference.results import ResultFormat, emit_results
    from ptcli.video.runner import VideoOptions, video_results
    from ptcli.video.sources import split_inputs

    from .models import DEFAULT_MODEL
    from .predictor import parse_classes
    from .rendering import VideoDrawing, human_lines
    from .slicing import MERGES
    from .tracking import TRACKERS, Tracking, detector_threshold

    if list_models:
        print_models(RECIPE, json_output, describe=True)
        return
    if not paths:
        raise UsageError("give at least one image or video (see `ptcli detect --help`)")
    if slice_merge not in MERGES:
        raise UsageError(f"--slice-merge must be one of {', '.join(MERGES)} (got {slice_merge!r})")
    if track is not None and track not in TRACKERS:
        raise UsageError(f"--track must be one of {', '.join(TRACKERS)} (got {track!r})")
    if mot is not None and track is None:
        raise UsageError("--mot writes tracks: add --track")
    parse_classes(classes)
    video = VideoOptions(vid_stride, start, end)
    if output is not None:
        output_folder(output, "the drawn images and videos")
    images, videos = split_inputs(paths, RECIPE.data_adapter.extensions)
    if track is not None and (images or not videos):
        raise UsageError("--track follows objects through videos; give only videos "
                         f"({len(images)} image{'s' if len(images) != 1 else ''} given)")
    if mot is not None:
        refuse_existing_mot(mot, overwrite)
    check_request(RECIPE, checkpoint=checkpoint, model=model, weights=weights, default=DEFAULT_MODEL, device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    precision = check_dtype(RECIPE, dtype, target)
    if batch_size is None:
        batch_size = default_batch_size(target)
    predictor = load_predictor(RECIPE, Source(checkpoint, model, weights), target,
                               threshold=threshold if track is None else detector_threshold(threshold, track),
                               classes=classes, max_detections=max_detections, masks=masks, slice_size=slice_size,
                               slice_overlap=slice_overlap, slice_merge=slice_merge)
    predictor.writing = output is not None
    predictor.precision = precision
    # With --slice, --batch-size counts tiles: the core batches each image's tiles.
    if not images:
        image_results = ()
    elif output is not None:  # the drawings the results carry, written by the core
        image_results = run_to_files(predictor, images, output=output, suffix="_detect", overwrite=overwrite,
                                     description="detecting", batch_size=batch_size, workers=workers)
    else:
        image_results = run(predictor, images, batch_size=batch_size, workers=workers, description="detecting")
    tracking = Tracking(track) if track is not None else None
    frame_results = video_results(predictor, videos, video, batch_size=batch_size, output=output, suffix="_detect",
                                  overwrite=overwrite, annotate=tracking, render=VideoDrawing(), description="detecting")
    if mot is not None:
        frame_results = write_mot(frame_results, mot)
    fmt = ResultFormat(human=human_lines, fields=lambda path, r: r, failed="could not be read")
    emit_results(chain(image_results, frame_results), fmt, total=len(images) + len(videos), json_output=json_output)


def refuse_existing_mot(path: Path, overwrite: bool) -> None:
    from ptcli.inference.inputs import output_folder

    if path.exists() and not overwrite:
        raise UsageError(f"--mot {path} exists; pass --overwrite to replace it")
    output_folder(path.parent if str(path.parent) else Path("."), "the MOTChallenge file")


def write_mot(results, path: Path):
    """The results, passing through, with every tracked detection written to ``path`` as it
    comes (the file is complete, under its name, when the run ends, even if a video broke off)."""
    from ptcli.inference.results import Failed
    from ptcli.video.frames import Frame
    from ptcli.video.mot import mot_line

    def lines(handle):
        for item, result in results:
            if isinstance(item, Frame) and not isinstance(result, Failed):
                handle.writelines(mot_line(item.index, row) for row in result["detections"])
                handle.flush()
            yield item, result

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.partial"), "w") as handle:
        try:
            yield from lines(handle)
        finally:
            handle.close()
            Path(handle.name).replace(path)


def default_batch_size(device) -> int:
    """4 on a GPU. On the CPU a batch is slower per image than one image at a time (measured on 2
    cores: 1.59 images/s one by one, 1.02 in batches of 4; the backbone's convolutions take
    twice as long per image in a batch of 8), so 1."""
    return 4 if device.type == "cuda" else 1

