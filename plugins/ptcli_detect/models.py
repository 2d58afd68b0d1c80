"""The detectors: torchvision's COCO models (weights downloaded once, checked by hash) and
Faster R-CNN on the offline EfficientNet-Lite0 as an FPN backbone, which trains on a machine
with no network (its ImageNet weights come from a pip package)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ptcli.errors import UsageError
from ptcli.plugins.recipe import ModelRegistry, ModelSpec
from ptcli.models.weights import WeightsSpec

DEFAULT_MODEL = "fasterrcnn_resnet50_fpn_v2"
OFFLINE_MODEL = "fasterrcnn_lite0_fpn"
_HUB = "https://download.pytorch.org/models"


@dataclass(frozen=True)
class Detector:
    """A torchvision detector: its builder, its COCO weights file and what it outputs."""

    name: str
    filename: str
    weights_enum: str
    masks: bool
    description: str


TORCHVISION = (
    Detector("fasterrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
             "FasterRCNN_ResNet50_FPN_V2_Weights", False, "Faster R-CNN v2, ResNet-50 FPN (COCO box AP 46.7)"),
    Detector("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
             "FasterRCNN_ResNet50_FPN_Weights", False, "Faster R-CNN, ResNet-50 FPN (COCO box AP 37.0; the book's)"),
    Detector("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
             "FasterRCNN_MobileNet_V3_Large_FPN_Weights", False, "Faster R-CNN, MobileNetV3-Large FPN (COCO box AP 32.8; fast)"),
    Detector("maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
             "MaskRCNN_ResNet50_FPN_V2_Weights", True, "Mask R-CNN v2, ResNet-50 FPN (COCO box AP 47.4, mask AP 41.8)"),
    Detector("retinanet_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
             "RetinaNet_ResNet50_FPN_V2_Weights", False, "RetinaNet v2, ResNet-50 FPN (COCO box AP 41.5)"),
    Detector("ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
             "SSDLite320_MobileNet_V3_Large_Weights", False, "SSDlite 320, MobileNetV3-Large (COCO box AP 21.3; fastest)"),
)
BY_NAME = {d.name: d for d in TORCHVISION}


def coco_categories() -> list[str]:
    """COCO's category names indexed by the COCO models' label (= COCO category id; 0 is the
    background, unused ids are "N/A"), from torchvision's metadata."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights

    return list(FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])


def build_torchvision(name: str, num_classes: int = 91, *, pretrained: bool = False, trainable_layers: int | None = None,
                      **model_args):
    """A torchvision detector with ``num_classes`` outputs (background included). ``pretrained``:
    start from its COCO weights (already resolved into torch hub's cache by the caller, which is
    where the builder reads them), with a new box predictor when the classes differ."""
    import torchvision
    from torchvision.models import detection

    detector = BY_NAME[name]
    builder = getattr(detection, name)
    kwargs = {key: value for key, value in model_args.items() if value is not None}
    if name.startswith("ssdlite"):
        kwargs.pop("min_size", None), kwargs.pop("max_size", None)  # SSDlite's input size is fixed (320)
    if not pretrained:
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    weights = getattr(torchvision.models.detection, detector.weights_enum).COCO_V1
    model = builder(weights=weights, trainable_backbone_layers=trainable_layers, **kwargs)
    if num_classes != 91:
        replace_predictor(model, num_classes)
    return model


def replace_predictor(model, num_classes: int) -> None:
    """A new classification layer for the data's classes, as the book's transfer learning does
    (and torchvision's fine-tuning tutorial): the box head (and mask head) for R-CNNs, the
    classification head for RetinaNet and SSDlite."""
    import math

    import torch
    from torch import nn
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    if hasattr(model, "roi_heads"):
        heads = model.roi_heads
        heads.box_predictor = FastRCNNPredictor(heads.box_predictor.cls_score.in_features, num_classes)
        if heads.mask_predictor is not None:
            heads.mask_predictor = MaskRCNNPredictor(heads.mask_predictor.conv5_mask.in_channels, 256, num_classes)
        return
    head = model.head.classification_head
    if hasattr(head, "cls_logits"):  # RetinaNet
        anchors = head.num_anchors
        head.cls_logits = nn.Conv2d(head.cls_logits.in_channels, anchors * num_classes, 3, padding=1)
        nn.init.normal_(head.cls_logits.weight, std=0.01)
        nn.init.constant_(head.cls_logits.bias, -math.log((1 - 0.01) / 0.01))
        head.num_classes = num_classes
        return
    for i, layer in enumerate(head.module_list):  # SSDlite: one conv block per feature map
        conv = layer[-1]
        anchors = conv.out_channels // head.num_columns
        head.module_list[i][-1] = nn.Conv2d(conv.in_channels, anchors * num_classes, 1)
    head.num_columns = num_classes
    with torch.no_grad():
        for layer in head.module_list:
            nn.init.xavier_uniform_(layer[-1].weight)
            nn.init.zeros_(layer[-1].bias)


# --- Faster R-CNN on EfficientNet-Lite0 (offline) -----------------------------------------

#: Lite0's stages grouped into five layers, bottom to top, as torchvision counts a ResNet's
#: trainable layers: model.trainable_layers N leaves the top N trainable.
LITE0_LAYERS = (("conv_stem", "bn1", "blocks.0"), ("blocks.1",), ("blocks.2",), ("blocks.3", "blocks.4"), ("blocks.5", "blocks.6"))
#: The stages whose outputs feed the FPN (strides 8, 16 and 32) and their channels.
LITE0_FEATURES = {2: 40, 4: 112, 6: 320}


def _lite0_backbone_class():
    import torch
    from torch import nn
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from ptcli.vision.lite0 import EfficientNetLite0

    class Lite0FPN(nn.Module):
        """Lite0's stride-8/16/32 features through an FPN (plus a max-pooled level). Its
        BatchNorms keep the ImageNet statistics, as torchvision's frozen BatchNorm does: detection
        batches of a few images would estimate them badly."""

        def __init__(self, out_channels: int = 128, trainable_layers: int = 3) -> None:
            super().__init__()
            body = EfficientNetLite0()
            # The classifier's end is not used; Identity (no tensors) rather than del, so that
            # torch.jit.script can still compile the body's own forward.
            body.conv_head, body.bn2, body.global_pool, body.classifier = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
            self.body = body
            self.fpn = FeaturePyramidNetwork(list(LITE0_FEATURES.values()), out_channels, extra_blocks=LastLevelMaxPool())
            self.out_channels = out_channels
            self.feature_stages = list(LITE0_FEATURES)  # an attribute, not a global: torch.jit.script reads it
            if not 0 <= trainable_layers <= len(LITE0_LAYERS):
                raise UsageError(f"model.trainable_layers={trainable_layers}: EfficientNet-Lite0 has 0 to {len(LITE0_LAYERS)}")
            frozen = [prefix for layer in LITE0_LAYERS[: len(LITE0_LAYERS) - trainable_layers] for prefix in layer]
            for name, parameter in body.named_parameters():
                if name.startswith(tuple(p + "." for p in frozen)) or isinstance(body.get_submodule(name.rsplit(".", 1)[0]), nn.BatchNorm2d):
                    parameter.requires_grad_(False)

        def train(self, mode: bool = True):
            super().train(mode)
            for module in self.body.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
            return self

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            body = self.body
            x = body.bn1(body.conv_stem(x))
            features: dict[str, torch.Tensor] = {}
            for index, stage in enumerate(body.blocks):
                x = stage(x)
                if index in self.feature_stages:
                    features[str(len(features))] = x
            return self.fpn(features)

    return Lite0FPN


def build_lite0_fasterrcnn(num_classes: int = 2, *, pretrained: bool = False, trainable_layers: int = 3,
                           min_size: int = 320, max_size: int = 512, fpn_channels: int = 128,
                           anchor_sizes: tuple[int, ...] = (16, 32, 64, 128), **_):
    """Faster R-CNN with a Lite0-FPN backbone; ``pretrained``: the backbone starts from the
    packaged ImageNet weights (no download)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = _lite0_backbone_class()(fpn_channels, trainable_layers)
    if pretrained:
        load_lite0_backbone(backbone.body)
    sizes = tuple((int(size),) for size in anchor_sizes)
    if len(sizes) != len(LITE0_FEATURES) + 1:
        raise UsageError(f"model.anchor_sizes needs {len(LITE0_FEATURES) + 1} sizes (one per feature level), got {len(sizes)}")
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))
    pool = MultiScaleRoIAlign(featmap_names=[str(i) for i in range(len(LITE0_FEATURES))], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=num_classes, min_size=min_size, max_size=max_size,
                      rpn_anchor_generator=anchors, box_roi_pool=pool)


def load_lite0_backbone(body) -> None:
    """The packaged ImageNet weights into the backbone (the head's tensors left out)."""
    from ptcli.models.state_dicts import load_state_dict
    from ptcli.vision.lite0 import EfficientNetLite0
    from ptcli.vision.pretrained import LITE0_WEIGHTS, lite0_state_dict
    from ptcli.models.weights import resolve

    state = lite0_state_dict(load_state_dict(resolve(LITE0_WEIGHTS)), EfficientNetLite0())
    wanted = body.state_dict()
    body.load_state_dict({key: value for key, value in state.items() if key in wanted})


# --- the registry ---------------------------------------------------------------------------

def _torchvision_spec(detector: Detector) -> ModelSpec:
    return ModelSpec(
        name=detector.name,
        build=partial(build_torchvision, detector.name),
        weights=WeightsSpec(name=detector.name, filename=detector.filename, url=f"{_HUB}/{detector.filename}",
                            cache="torch-hub", license="BSD-3-Clause (torchvision); trained on COCO"),
        preprocessing={"masks": detector.masks},
        labels=coco_categories,
        description=detector.description,
    )


def make_registry() -> ModelRegistry:
    registry = ModelRegistry("detect")
    for detector in TORCHVISION:
        registry.add(_torchvision_spec(detector))
    registry.add(ModelSpec(name=OFFLINE_MODEL, build=build_lite0_fasterrcnn, preprocessing={"masks": False},
                           description="Faster R-CNN on the offline EfficientNet-Lite0 (FPN): train it with "
                                       "`ptcli train recipes/coco-fasterrcnn.yaml`, no download needed"))
    return registry


def has_masks(model) -> bool:
    heads = getattr(model, "roi_heads", None)
    return heads is not None and getattr(heads, "mask_predictor", None) is not None


def classes_in(state: dict) -> int | None:
    """The number of classes (background included) a detector's state dict was trained for."""
    if "roi_heads.box_predictor.cls_score.weight" in state:
        return int(state["roi_heads.box_predictor.cls_score.weight"].shape[0])
    return None


# --- loading for inference --------------------------------------------------------------------

@dataclass(frozen=True)
class Categories:
    """What a model's output label means: ``names[label]`` and ``ids[label]`` (the category id
    of the data it was trained on; COCO's own ids for the COCO models). Label 0 is the background."""

    names: list[str]
    ids: list[int]

    @classmethod
    def of_training(cls, classes: list[str], category_ids: list[int] | None) -> Categories:
        return cls(["__background__", *classes], [0, *(category_ids or range(1, len(classes) + 1))])

    def selectable(self) -> list[str]:
        return [name for name in self.names[1:] if name != "N/A"]

    def labels_for(self, wanted: list[str]) -> set[int]:
        """The output labels of the class names ``--classes`` gives (an unknown one is an error)."""
        known = set(self.selectable())
        unknown = [name for name in wanted if name not in known]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(known), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            listed = ", ".join(self.selectable()[:12]) + (", ..." if len(known) > 12 else "")
            raise UsageError(f"--classes: the model has no class {unknown[0]!r}; {hint}its classes: {listed}")
        return {label for label, name in enumerate(self.names) if name in set(wanted)}


@dataclass
class LoadedDetector:
    model: object
    categories: Categories
    source: str


def _rebuild(spec, ckpt):
    args = {key: value for key, value in (ckpt.meta.get("model_args") or {}).items() if key != "pretrained"}
    return spec.build(num_classes=len(ckpt.classes) + 1, **args)


def _from_name(name: str, weights):
    """A named detector with its COCO weights, or ``--weights``: any state dict of that
    architecture, its number of classes read from the tensors where it can be."""
    from ptcli.models.state_dicts import load_state_dict, load_weights_into
    from ptcli.models.loading import LoadedModel, build_named
    from ptcli.models.weights import local_weights

    from . import RECIPE

    spec = RECIPE.model_registry.get(name)
    if weights is None:
        loaded = build_named(spec, None)
        return LoadedModel(loaded.model, loaded.labels, source=loaded.source, extra=Categories(loaded.labels, list(range(len(loaded.labels)))))
    state = load_state_dict(local_weights(weights))
    num_classes = classes_in(state) or 91
    model = spec.build(num_classes=num_classes)
    load_weights_into(model, state, source=f"weights {weights}")
    if num_classes == 91 and spec.labels is not None:
        names = list(spec.labels())
        categories = Categories(names, list(range(len(names))))
    else:
        categories = Categories.of_training([f"class_{i}" for i in range(1, num_classes)], None)
    return LoadedModel(model, categories.names, source=str(weights), extra=categories)


def load_detector(model: str | None, weights=None, checkpoint=None) -> LoadedDetector:
    from ptcli.models.loading import load_model

    from . import RECIPE

    loaded = load_model(RECIPE, checkpoint=checkpoint, model=model, weights=weights, default=DEFAULT_MODEL,
                        rebuild=_rebuild, from_name=_from_name)
    categories = loaded.extra if isinstance(loaded.extra, Categories) else \
        Categories.of_training(loaded.labels, loaded.meta.get("category_ids"))
    return LoadedDetector(loaded.model, categories, loaded.source)


def configure_inference(model, threshold: float, max_detections: int) -> None:
    """Make the model itself drop boxes below ``threshold`` and keep at most ``max_detections``
    per image (cheaper than filtering after, and a threshold below the builders' default 0.05
    then finds what that default would hide)."""
    heads = getattr(model, "roi_heads", None)
    owner = heads if heads is not None else model
    if hasattr(owner, "score_thresh"):
        owner.score_thresh = threshold
    if hasattr(owner, "detections_per_img"):
        owner.detections_per_img = max_detections


def detect_by_size(net, images: list) -> list:
    """``net(images)`` with only images of one size in each forward pass, in the input order.
    torchvision's detectors pad a batch to its largest image, and the padding moves the others'
    boxes and scores: an image's detections must not depend on its batch-mates (in the command,
    the server, eval and validation alike). Same-size images pad alike, so they still batch."""
    groups: dict[tuple, list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape[-2:]), []).append(index)
    outputs: list = [None] * len(images)
    for indices in groups.values():
        for index, output in zip(indices, net([images[i] for i in indices])):
            outputs[index] = output
    return outputs
