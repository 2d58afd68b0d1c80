"""detect: object detection and instance segmentation with torchvision's Faster R-CNN, Mask
R-CNN, RetinaNet and SSDlite, sliced inference for large images, COCO fine-tuning and mAP
(book ch. 9).

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

from .tracking import TRACKERS

RECIPE = Recipe(
    name="detect",
    help="Object detection (Faster/Mask R-CNN, RetinaNet, SSDlite), sliced for large images.",
    commands=(
        Command(
            name="detect",
            help="Find objects in images and videos: boxes, labels, scores (and masks); --track; --slice for large images.",
            target="ptcli_detect.command:detect",
            example=("{image}", "--device", "cpu"),
            optional_values={"--track": TRACKERS},
        ),
    ),
    models="ptcli_detect.models:make_registry",
    data="ptcli_detect.images:DetectionImages",
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32", "bf16")),
    training="ptcli_detect.training:DetectTask",
    export="ptcli_detect.exporting:exportable",
    predictor="ptcli_detect.predictor:Detector",
    runtimes={"detector": "ptcli_detect.exporting:runtime"},
    model_ops=("torchvision",),  # torchvision's nms and roi_align, which its exports call
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
