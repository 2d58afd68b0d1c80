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
            example=("{image}", "--device", "cpu"),
            optional_values={"--track": TRACKERS},
            doc="Detect objects in images and videos with a torchvision detector (Faster R-CNN v2 on COCO by default) "
                "or a fine-tuned checkpoint. Prints each image's (or video frame's) objects: label, score and box in "
                "pixels; --json gives one object per image or frame (\"frame\" and \"time\" for videos), boxes as COCO "
                "[x, y, w, h], masks as COCO RLE. --track follows objects through a video. Unreadable inputs are "
                "reported and skipped; the exit code is then 1.",
            help_for={
                "inputs": "Images or videos: files, folders (searched recursively), glob patterns, image sequences "
                          "(frames/%05d.png), stream URLs (rtsp://, http://) or a webcam's number.",
                "model": "fasterrcnn_resnet50_fpn_v2 (default), maskrcnn_resnet50_fpn_v2, retinanet_resnet50_fpn_v2, "
                         "fasterrcnn_mobilenet_v3_large_fpn, ... (--list-models); COCO weights are downloaded once.",
                "weights": "A state dict for --model (.pth/.safetensors); its number of classes is read from it.",
                "checkpoint": "A checkpoint from `ptcli train recipes/coco-fasterrcnn.yaml` (runs offline).",
                "batch_size": "Images (or, with --slice, tiles) per forward pass [default: 4 on CUDA, 1 on the CPU, "
                              "where batches make a detector slower per image].",
                "output": "Write DIR/<name>_detect.png per image, with boxes, labels, scores (and masks) drawn; "
                          "DIR/<name>_detect.mp4 (or the source's container) per video, with track ids and trails, "
                          "and the source's audio.",
            },
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
