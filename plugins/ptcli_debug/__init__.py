"""The book's debugging tools (ch. 7): class activation maps for any image classifier.

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="debug",
    help="Debugging tools for models (book ch. 7): class activation maps.",
    commands=(
        Command(
            name="explain",
            help="Show where an image classifier looks: CAM / Grad-CAM / Grad-CAM++ heat maps on the image.",
            target="ptcli_debug.command:explain",
            example=("{image}", "-o", "{tmp}", "--device", "cpu"),
        ),
    ),
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32",)),
    predictor="ptcli_debug.predictor:Explainer",
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
