"""Black-box attacks by transfer (book ch. 9): adversarial images crafted on a model the
attacker has (``--source``) and scored on the one they do not."""

from __future__ import annotations

from pathlib import Path


def source_model(checkpoint: Path, target, device):
    """The source classifier as a module on the target's model-input pixels: resized (if their
    input sizes differ) to the source's input, then its network."""
    from torch import nn

    from ptcli.plugins import capabilities

    source = capabilities.load(capabilities.IMAGE_CLASSIFIER, checkpoint=checkpoint).to(device)
    network = source.network()
    size = int(source.preprocessing["crop"]) if hasattr(source, "preprocessing") else None

    class OnTargetPixels(nn.Module):
        def forward(self, pixels):
            import torch.nn.functional as F

            if size is not None and pixels.shape[-1] != size:
                pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            return network(pixels)

    return OnTargetPixels()
