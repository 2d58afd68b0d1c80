"""The super-resolution models: RRDBNet (basicsr's architecture) with the published ESRGAN and
Real-ESRGAN weights, any RRDBNet state dict (its size read from the tensors), and bicubic as
the baseline."""

from __future__ import annotations

import re
from functools import partial

from ptcli.errors import UsageError
from ptcli.plugins.recipe import ModelRegistry, ModelSpec
from ptcli.models.weights import WeightsSpec

DEFAULT_MODEL = "realesrgan-x4plus"
_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"


def build_rrdbnet(scale: int = 4, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32, **_):
    from ptcli_super_resolve.basicsr_compat import import_basicsr

    arch = import_basicsr("archs.rrdbnet_arch")
    return arch.RRDBNet(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)


class Bicubic:
    """The baseline: bicubic interpolation as a module-like callable (no weights)."""

    def __init__(self, scale: int = 4, **_) -> None:
        self.scale = scale

    def __call__(self, x):
        import torch.nn.functional as F

        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0, 1)

    # the few nn.Module methods inference calls
    def to(self, *_args, **_kwargs):
        return self

    def eval(self):
        return self

    def half(self):
        return self


def _published(name: str, scale: int, filename: str, url: str, sha256: str | None, description: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        build=partial(build_rrdbnet, scale=scale),
        weights=WeightsSpec(name=name, filename=filename, url=url, sha256=sha256, license="BSD-3-Clause (Real-ESRGAN) / Apache-2.0 (BasicSR)"),
        preprocessing={"scale": scale, "num_feat": 64, "num_block": 23, "num_grow_ch": 32},
        description=description,
    )


PUBLISHED = (
    _published("realesrgan-x4plus", 4, "RealESRGAN_x4plus.pth", f"{_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",
               "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
               "Real-ESRGAN x4plus: real-world photos, x4"),
    _published("realesrgan-x2plus", 2, "RealESRGAN_x2plus.pth", f"{_RELEASES}/v0.2.1/RealESRGAN_x2plus.pth",
               "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
               "Real-ESRGAN x2plus: real-world photos, x2"),
    # The hash prefix in the file name (ff704c30) is checked on download.
    _published("esrgan-x4", 4, "ESRGAN_SRx4_DF2KOST_official-ff704c30.pth",
               f"{_RELEASES}/v0.1.1/ESRGAN_SRx4_DF2KOST_official-ff704c30.pth", None,
               "ESRGAN (Wang et al. 2018), bicubic-degraded images, x4"),
)
RRDBNET = ModelSpec(name="rrdbnet", build=build_rrdbnet, description="RRDBNet of any size: use with --weights or a checkpoint")
BICUBIC = ModelSpec(name="bicubic", build=Bicubic, description="bicubic interpolation (the baseline; no weights)")


def make_registry() -> ModelRegistry:
    registry = ModelRegistry("super-resolve")
    for spec in (*PUBLISHED, RRDBNET, BICUBIC):
        registry.add(spec)
    return registry


def rrdbnet_args(state: dict) -> dict:
    """RRDBNet's size and scale, read from a state dict's tensor shapes."""
    if "conv_first.weight" not in state:
        raise UsageError("these weights are not an RRDBNet state dict (no conv_first.weight); "
                         "super-resolve reads basicsr-style ESRGAN/Real-ESRGAN weights")
    first = state["conv_first.weight"]
    scale = {3: 4, 12: 2, 48: 1}.get(int(first.shape[1]))
    if scale is None:
        raise UsageError(f"conv_first takes {first.shape[1]} channels: not an RGB RRDBNet of scale 1, 2 or 4")
    blocks = {int(m.group(1)) for key in state if (m := re.match(r"body\.(\d+)\.", key))}
    return {"scale": scale, "num_feat": int(first.shape[0]), "num_block": len(blocks),
            "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0]) if blocks else 32}


def _named_upscaler(name: str, weights):
    """A published model by name, bicubic, or (``--weights``) any RRDBNet state dict, its size
    read from the tensors (and checked against ``--model`` when one is named)."""
    from ptcli.models.state_dicts import load_state_dict, load_weights_into
    from ptcli.models.loading import LoadedModel, build_named
    from ptcli.models.weights import local_weights

    from . import RECIPE

    spec = RECIPE.model_registry.get(name)
    if spec.name == "bicubic" and weights is not None:
        raise UsageError("bicubic has no weights; drop --weights or --model bicubic")
    if spec.name == "bicubic":
        return LoadedModel(spec.build(scale=4), preprocessing={"scale": 4}, source="bicubic")
    if weights is None:
        return build_named(spec, None)
    state = load_state_dict(local_weights(weights))
    args = rrdbnet_args(state)
    expected = dict(spec.preprocessing)
    if expected and any(expected.get(k) != v for k, v in args.items()):
        raise UsageError(f"{weights} holds an RRDBNet with {args}, not {spec.name}'s {expected}; drop --model")
    model = build_rrdbnet(**args)
    load_weights_into(model, state, source=f"weights {weights}")
    return LoadedModel(model, preprocessing={"scale": args["scale"]}, source=str(weights))


def load_upscaler(model_name: str | None, weights=None, checkpoint=None):
    """(model, native scale, name) from a checkpoint, local weights or a published model."""
    from ptcli.models.loading import load_model

    from . import RECIPE

    loaded = load_model(RECIPE, checkpoint=checkpoint, model=model_name, weights=weights,
                        default="rrdbnet" if weights is not None and model_name is None else DEFAULT_MODEL,
                        rebuild=lambda spec, ckpt: build_rrdbnet(**rrdbnet_args(ckpt.state_dict)),
                        from_name=_named_upscaler, needs_labels=False)
    scale = int(loaded.preprocessing.get("scale") or rrdbnet_args(loaded.model.state_dict())["scale"])
    return loaded.model, scale, loaded.source
