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
            doc="""Classify images with an ImageNet model (EfficientNet-Lite0 by default, offline) or a
    fine-tuned checkpoint. Prints the top-k labels per image or video frame; with --json, one
    JSON object per image or frame per line (a frame's with its "frame" index and "time"). Unreadable images are reported and skipped; the exit code is then 1.""",
            help_for={
                "inputs": "Images or videos: files, folders (searched recursively), glob patterns, image sequences (frames/%05d.png), stream URLs or a webcam's number.",
                "model": "efficientnet_lite0 (default), a torchvision classifier (resnet50, vgg16, mobilenet_v3_large, ...) or timm/<name>.",
                "checkpoint": "A ptcli checkpoint (NAME.safetensors with its NAME.json sidecar), or its export (.onnx, .xml, .pt2, .ts).",
                "batch_size": "Images per forward pass.",
            },
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
