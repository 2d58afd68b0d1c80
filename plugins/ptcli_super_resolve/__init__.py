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
            target="ptcli_super_resolve.command:super_resolve",
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
