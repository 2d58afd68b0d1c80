"""How super-resolve exports: the network on (B, 3, H, W) pixels in [0, 1] to (B, 3, sH, sW),
with height and width dynamic. Tiling, padding and saving stay in ptcli, as for eager."""

from __future__ import annotations

#: The size of the sample patches for each batch size: the export is traced at batch 2, and
#: checked at batches 1 and 4 on other sizes, so a height or width fixed by mistake shows.
_PATCH = {1: (48, 32), 2: (40, 56)}
_OTHER = (24, 40)


def exportable(*, checkpoint, model, weights, samples):
    import torch

    from ptcli.errors import UsageError
    from ptcli.exporting.spec import IMAGE, Exportable, predictor_inputs, sample_image, sidecar, variants
    from ptcli.inference.contract import Source

    from . import RECIPE
    from .predictor import Upscaler
    from .tiling import _UNSHUFFLE

    upscaler = Upscaler.load(Source(checkpoint, model, weights), torch.device("cpu"))
    net, scale, name = upscaler.net, upscaler.native, upscaler.name
    if not isinstance(net, torch.nn.Module):
        raise UsageError(f"{name} is not a network (it is a plain resize); there is nothing to export")
    net = net.to(memory_format=torch.contiguous_format)  # the plain layout; the command runs it channels_last
    # The command's own decode (any mode, 16 bits, alpha) gives the pixels the model sees.
    pictures = [image.rgb for image in predictor_inputs(upscaler, samples or [sample_image()])]

    def sample(n: int):
        height, width = _PATCH.get(n, _OTHER)

        def crop(picture, k):
            top = min(k * 16, max(0, picture.shape[-2] - height))
            left = min(k * 16, max(0, picture.shape[-1] - width))
            return picture[:, top:top + height, left:left + width]

        return (torch.stack(variants(pictures, n, crop)),)

    meta = sidecar(RECIPE.name, checkpoint, model=model or name, classes=None, preprocessing={"scale": scale})
    return Exportable(module=net, input_names=("pixels",), output_names=("upscaled",), sample=sample, meta=meta,
                      dynamic={"pixels": {2: "height", 3: "width"}}, output=IMAGE,
                      dim_multiples=dict.fromkeys(("height", "width"), _UNSHUFFLE.get(scale, 1)))
