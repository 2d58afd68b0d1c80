"""super-resolve: ESRGAN / Real-ESRGAN super-resolution with seamless tiling, and GAN training
(book ch. 9).

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="super-resolve",
    help="Super-resolution with ESRGAN and Real-ESRGAN (RRDBNet), tiled for images of any size.",
    commands=(
        Command(
            name="super-resolve",
            help="Upscale images x2/x4 with (Real-)ESRGAN, tile by tile, with seamless blending.",
            doc="""Upscale images with ESRGAN-family models (Real-ESRGAN x4plus by default). Large images
    are processed in overlapping tiles that are blended, so the result has no seams and only
    one tile is on the device at a time. Greyscale, RGBA (alpha upscaled separately) and 16-bit
    PNG keep their format. Writes DIR/<name>_x4.png per image and DIR/<name>_x4.mp4 per video
    (frames upscaled one by one, at the source's frame rate).""",
            help_for={
                "inputs": "Images or videos: files, folders, glob patterns, image sequences (frames/%05d.png), stream URLs or a webcam's number.",
                "model": "realesrgan-x4plus (default), realesrgan-x2plus, esrgan-x4 (published weights, downloaded once), or bicubic.",
                "weights": "Any basicsr-style RRDBNet state dict (.pth/.safetensors; params_ema preferred); its size and scale are read from it.",
                "checkpoint": "A checkpoint from `ptcli train recipes/esrgan-*.yaml`.",
                "batch_size": "Images per pass (one: a large image's result needs the memory).",
                "output": "Folder for the results (created if needed); a video becomes DIR/<name>_x4.mp4 (or the source's container), with its audio.",
            },
            example=("{image}", "--model", "bicubic", "-o", "{tmp}", "--device", "cpu"),
        ),
    ),
    models="ptcli_super_resolve.models:make_registry",
    data="ptcli_super_resolve.images:SRImages",
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32", "bf16", "fp16")),
    training="ptcli_super_resolve.training:SuperResolveTask",
    export="ptcli_super_resolve.exporting:exportable",
    predictor="ptcli_super_resolve.predictor:Upscaler",
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
