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
            doc="""Class activation maps as the book draws them: where in each image the classifier's
    evidence for a class lies, as a heat map over the original image (red: strong). The map
    covers the part of the image the model sees (its centre crop). With --json, one object
    per image: {"input", "output", "label", "score", "layer"}.""",
            help_for={
                "inputs": "Images or videos: files, folders, globs, image sequences (frames/%05d.png), stream URLs or a webcam's number.",
                "model": "An image classifier by name (default: efficientnet_lite0, offline).",
                "weights": "Local weights for --model.",
                "checkpoint": "A classify-image checkpoint.",
                "batch_size": "Images per pass (each is explained on its own).",
                "output": "Where DIR/<name>_cam.png goes: the image with the map over it and its colour scale; a video's maps go to DIR/<name>_cam.mp4.",
            },
            example=("{image}", "-o", "{tmp}", "--device", "cpu"),
        ),
    ),
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32",)),
    predictor="ptcli_debug.predictor:Explainer",
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
