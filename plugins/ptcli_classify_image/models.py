"""The models classify-image knows: EfficientNet-Lite0 (default, weights from a pip package,
so it works offline), every torchvision classifier with its weights enum, and timm/<name>."""

from __future__ import annotations

from functools import partial

from ptcli.errors import UsageError
from ptcli.vision.pretrained import LITE0_WEIGHTS, lite0_state_dict, rename_keys_in_order  # noqa: F401 (re-exported)

from .imagenet import imagenet_labels
from ptcli.plugins.recipe import ModelRegistry, ModelSpec
from ptcli.models.weights import WeightsSpec

DEFAULT_MODEL = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)




# --- EfficientNet-Lite0 -------------------------------------------------------------------

def _build_timm(architecture: str, num_classes: int | None = None):
    import timm

    return timm.create_model(architecture, pretrained=False, num_classes=num_classes or 1000)


def _build_lite0(num_classes: int | None = None, tensorflow: bool = True):
    from ptcli.vision.lite0 import EfficientNetLite0

    return EfficientNetLite0(num_classes=num_classes or 1000, tensorflow=tensorflow)


EFFICIENTNET_LITE0 = ModelSpec(
    name=DEFAULT_MODEL,
    build=_build_lite0,
    weights=LITE0_WEIGHTS,
    # The packaged weights are TensorFlow's EfficientNet-Lite0, trained on (pixel - 127) / 128
    # ("edge models use inception-style mean and stddev for better post-quantization"), as timm's
    # tf_efficientnet_lite0 runs them. With ImageNet statistics instead, the mean top-1
    # probability on the shared photos and their crops fell from 0.50 to 0.45.
    preprocessing={"resize": 256, "crop": 224, "interpolation": "bicubic", "mean": LITE0_MEAN, "std": LITE0_STD},
    labels=imagenet_labels,
    adapt_state_dict=lite0_state_dict,
    description="EfficientNet-Lite0 (TensorFlow's weights), ImageNet-1k, 4.7M parameters",
)


# --- torchvision --------------------------------------------------------------------------

def torchvision_names() -> list[str]:
    """torchvision's classifiers (``list_models(module=torchvision.models)``), read from a file
    so that looking a name up imports neither torchvision nor torch (a test keeps it current)."""
    from importlib.resources import files

    return (files("ptcli_classify_image") / "torchvision_classifiers.txt").read_text(encoding="utf-8").split()


def _build_torchvision(name: str, num_classes: int | None = None):
    import torchvision.models as tvm

    return tvm.get_model(name, weights=None, num_classes=num_classes or 1000)


def torchvision_spec(name: str) -> ModelSpec | None:
    if name not in torchvision_names():
        return None
    import torchvision.models as tvm

    published = tvm.get_model_weights(name).DEFAULT
    transform = published.transforms()
    return ModelSpec(
        name=name,
        build=partial(_build_torchvision, name),
        weights=WeightsSpec(name=name, filename=published.url.rsplit("/", 1)[-1], url=published.url, cache="torch-hub"),
        preprocessing={
            "resize": transform.resize_size[0],
            "crop": transform.crop_size[0],
            "interpolation": transform.interpolation.value,
            "mean": list(transform.mean),
            "std": list(transform.std),
        },
        labels=lambda: list(published.meta["categories"]),
        description=f"torchvision {name} ({published})",
    )


# --- timm ---------------------------------------------------------------------------------

TIMM_PREFIX = "timm/"


def _timm_labels(num_classes: int) -> list[str]:
    if num_classes == 1000:
        return imagenet_labels()
    return [f"class_{i}" for i in range(num_classes)]


def timm_spec(name: str) -> ModelSpec | None:
    if not name.startswith(TIMM_PREFIX):
        return None
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    full = name[len(TIMM_PREFIX):]
    architecture, _tag = split_model_name_tag(full)
    if not timm.is_model(architecture):
        return None
    try:
        cfg = get_pretrained_cfg(full)
    except RuntimeError:  # timm's answer to an unknown tag
        return None
    if cfg is None:
        return None
    height = cfg.input_size[-1]
    return ModelSpec(
        name=name,
        build=partial(_build_timm, full),
        weights=WeightsSpec(name=name, filename="model.safetensors", cache="huggingface", hf_repo=cfg.hf_hub_id) if cfg.hf_hub_id else None,
        preprocessing={
            "resize": int(height / cfg.crop_pct),
            "crop": height,
            "interpolation": cfg.interpolation or "bicubic",
            "mean": list(cfg.mean),
            "std": list(cfg.std),
        },
        labels=partial(_timm_labels, cfg.num_classes),
        description=f"timm {full}",
    )


# --- the book's networks, trained from scratch ----------------------------------------------

def _build_simplenet(num_classes: int = 2, image_size: int = 64):
    from .nets import SimpleNet

    return SimpleNet(num_classes=num_classes, image_size=image_size)


def _build_cnnnet(num_classes: int = 2, image_size: int = 64):
    from .nets import CNNNet

    if image_size < CNNNet.MIN_SIZE:
        raise UsageError(f"cnnnet needs images of at least {CNNNet.MIN_SIZE} px (data.image_size={image_size}); "
                         "raise data.image_size or use simplenet")
    return CNNNet(num_classes=num_classes)


SCRATCH_MODELS = (
    ModelSpec(name="simplenet", build=_build_simplenet, description="the book's SimpleNet (ch. 2): three Linear layers"),
    ModelSpec(name="cnnnet", build=_build_cnnnet, description="the book's AlexNet-style CNNNet (ch. 3)"),
)


def build_model(spec: ModelSpec, num_classes: int, *, image_size: int | None = None, transfer_head: str | None = None,
                hidden: int = 500, dropout: float = 0.5, tensorflow: bool = False):
    """The architecture a checkpoint's ``model_args`` describe, with random weights: a scratch
    network for its image size, a backbone with a new head, or the model with its own head.
    ``tensorflow``: Lite0 as its weights were trained (training records it); a Lite0
    checkpoint without it was fine-tuned in the network ptcli ran before, and gets that one."""
    if spec.name in {s.name for s in SCRATCH_MODELS}:
        return spec.build(num_classes=num_classes, **({"image_size": image_size} if image_size else {}))
    variant = {"tensorflow": tensorflow} if spec.name == DEFAULT_MODEL else {}
    if transfer_head is not None:
        from .nets import TransferNet

        return TransferNet(spec.build(**variant), num_classes, head=transfer_head, hidden=hidden, dropout=dropout)
    return spec.build(num_classes=num_classes, **variant)


def make_registry() -> ModelRegistry:
    registry = ModelRegistry("classify-image", list_hint="`ptcli classify-image --list-models` lists them")
    registry.add(EFFICIENTNET_LITE0)
    for spec in SCRATCH_MODELS:
        registry.add(spec)
    registry.add_resolver(torchvision_spec, torchvision_names)
    registry.add_resolver(timm_spec, lambda: ["timm/<name>"])
    return registry


def load_classifier(model_name: str | None, weights=None, checkpoint=None):
    """(model, labels, preprocessing) from a checkpoint, or a named model with its default or
    given weights."""
    from ptcli.models.loading import load_model

    from . import RECIPE

    def rebuild(spec, ckpt):
        return build_model(spec, len(ckpt.classes), **(ckpt.meta.get("model_args") or {}))

    loaded = load_model(RECIPE, checkpoint=checkpoint, model=model_name, weights=weights, default=DEFAULT_MODEL,
                        rebuild=rebuild)
    return loaded.model, loaded.labels, loaded.preprocessing
