"""`ptcli super-resolve`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import (DeviceOption, EndOption, JsonOption, StartOption, VidStrideOption, checkpoint_option, model_option,
                               paths_argument, weights_option)

from . import RECIPE
from .outputs import output_extension


def _tile_option(value: str) -> int | None | str:
    if value in ("auto", "none", "0"):
        return {"auto": "auto", "none": None, "0": None}[value]
    try:
        tile = int(value)
    except ValueError:
        raise UsageError(f"--tile must be a number of pixels, auto or none (got {value!r})") from None
    if tile < 16:
        raise UsageError("--tile must be at least 16 pixels")
    return tile


def super_resolve(
    paths: paths_argument("Images or videos: files, folders, glob patterns, image sequences (frames/%05d.png), stream URLs or a webcam's number.") = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Folder for the results (created if needed); a video becomes DIR/<name>_x4.mp4 (or the source's container), with its audio.")] = Path("."),
    model: model_option("realesrgan-x4plus (default), realesrgan-x2plus, esrgan-x4 (published weights, downloaded once), or bicubic.") = None,
    weights: weights_option("Any basicsr-style RRDBNet state dict (.pth/.safetensors; params_ema preferred); its size and scale are read from it.") = None,
    checkpoint: checkpoint_option("A checkpoint from `ptcli train recipes/esrgan-*.yaml`.") = None,
    scale: Annotated[float | None, typer.Option(min=0.1, metavar="S", help="Output scale, when it differs from the model's (resized after) [default: the model's].")] = None,
    tile: Annotated[str, typer.Option(metavar="N|auto|none", help="Tile size in input pixels; auto: from free device memory, halved on out-of-memory.")] = "auto",
    tile_overlap: Annotated[int, typer.Option(min=0, metavar="N", help="Overlap between tiles, in input pixels (blended).")] = 16,
    bf16: Annotated[bool, typer.Option("--bf16", help="Compute in bfloat16 (fast on GPUs with bf16 units and on CPUs with AMX; fp32 range, so no overflow).")] = False,
    half: Annotated[bool, typer.Option("--half", help="fp16 on CUDA (about twice as fast; not on the CPU).")] = False,
    ext: Annotated[str | None, typer.Option(metavar="EXT", help="Output format by file ending: png (default), jpg, webp, tif.")] = None,
    suffix: Annotated[str | None, typer.Option(metavar="TEXT", help="Added to each output name [default: _x<scale>].")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    vid_stride: VidStrideOption = 1,
    start: StartOption = None,
    end: EndOption = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Upscale images with ESRGAN-family models (Real-ESRGAN x4plus by default). Large images
    are processed in overlapping tiles that are blended, so the result has no seams and only
    one tile is on the device at a time. Greyscale, RGBA (alpha upscaled separately) and 16-bit
    PNG keep their format. Writes DIR/<name>_x4.png per image and DIR/<name>_x4.mp4 per video
    (frames upscaled one by one, at the source's frame rate)."""
    from ptcli.devices import resolve_device
    from ptcli.inference.contract import Source
    from itertools import chain

    from ptcli.inference.inputs import output_folder
    from ptcli.video.runner import VideoOptions, video_results
    from ptcli.video.sources import split_inputs
    from ptcli.inference.results import ResultFormat, emit_results
    from ptcli.inference.runner import run
    from ptcli.models.loading import check_request

    from .predictor import Upscaler

    if not paths:
        raise UsageError("give at least one image file, folder or glob (see `ptcli super-resolve --help`)")
    video = VideoOptions(vid_stride, start, end)
    inputs, videos = split_inputs(paths, RECIPE.data_adapter.extensions)
    output_folder(output)
    check_request(RECIPE, checkpoint=checkpoint, model=model, weights=weights, device=device)
    tile_setting = _tile_option(tile)
    output_extension(ext)
    import torch

    target = resolve_device(device, RECIPE.devices.devices)
    if half and target.type != "cuda":
        raise UsageError(f"--half needs a CUDA device; {target} computes in fp32")
    if half and bf16:
        raise UsageError("--half and --bf16 are two precisions; pick one")
    predictor = Upscaler.load(Source(checkpoint, model, weights), target, scale=scale, tile=tile_setting,
                              tile_overlap=tile_overlap, dtype=torch.float16 if half else torch.bfloat16 if bf16 else None,
                              output=output, suffix=suffix, ext=ext, overwrite=overwrite)
    # One image at a time, read in this process: a large image's result needs the memory.
    results = run(predictor, inputs, batch_size=1, workers=0, description="upscaling") if inputs else ()
    frames = video_results(predictor, videos, video, batch_size=1, output=output, suffix=predictor.suffix,
                           overwrite=overwrite, description="upscaling")
    fmt = ResultFormat(human=describe_result, fields=lambda path, r: r)
    emit_results(chain(results, frames), fmt, total=len(inputs) + len(videos), json_output=json_output)


def describe_result(item, result: dict) -> str:
    size = f"{result['size'][0]}x{result['size'][1]}"
    return f"{item} -> {result['output']} ({size}" + (f", {result['seconds']:.1f} s)" if "seconds" in result else ")")
