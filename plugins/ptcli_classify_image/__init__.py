"""classify-image: ImageNet (or fine-tuned) image classification, book chapters 2-4.

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="classify-image",
    help="Image classification with torchvision and timm models.",
    commands=(
        Command(
            name="classify-image",
            help="Classify images (files, folders, globs) with an ImageNet or fine-tuned model.",
            target="ptcli_classify_image.command:classify_image",
            example=("{image}", "--device", "cpu"),
        ),
    ),
    models="ptcli_classify_image.models:make_registry",
    data="ptcli_classify_image.data:ImageFiles",
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32", "bf16", "fp16")),
    training="ptcli_classify_image.training:ClassifyImageTask",
    # The adversarial commands (attack, defend) drive any image classifier through this.
    provides={"image-classifier": "ptcli_classify_image.pixels:load_pixel_classifier"},
    export="ptcli_classify_image.exporting:exportable",
    predictor="ptcli_classify_image.predictor:ImageClassifier",
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
