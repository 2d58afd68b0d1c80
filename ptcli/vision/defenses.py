"""Input filters that pre-process an image before a classifier sees it (book ch. 9), as
defences: JPEG re-compression, a median filter, bit-depth reduction. They work on pixel
batches in [0, 1] (B, 3, H, W). They mostly hide the gradient rather than remove the
adversarial signal, which is why attacks through them use BPDA (ptcli.attacks.straight_through).
"""

from __future__ import annotations

from dataclasses import dataclass

from ptcli.errors import UsageError

KINDS = {"jpeg": (1, 100, "quality"), "median": (1, 15, "window size"), "bits": (1, 8, "bits per channel"),
         "noise": (0.0, 1.0, "noise's standard deviation")}
#: Filters that draw anew on every call: attack them with EOT (--eot).
RANDOM = ("noise",)
#: The filters `ptcli defend` compares, with their usual settings.
STANDARD = ("jpeg:75", "median:3", "bits:4")


@dataclass(frozen=True)
class InputFilter:
    kind: str
    value: float

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value:g}"

    @property
    def random(self) -> bool:
        return self.kind in RANDOM

    def __call__(self, x):
        return {"jpeg": _jpeg, "median": _median, "bits": _bits, "noise": _noise}[self.kind](x, self.value)


def parse_filter(text: str) -> InputFilter:
    kind, _, value = text.partition(":")
    if kind == "noise":
        try:
            sigma = float(value)
        except ValueError:
            sigma = -1.0
        if not 0 < sigma <= 1:
            raise UsageError(f"--defense {text}: noise:SIGMA adds Gaussian noise of SIGMA in pixel values of [0, 1], above 0 and at most 1 (e.g. noise:0.25)")
        return InputFilter(kind, sigma)
    if kind not in KINDS or not value.isdigit():
        raise UsageError(f"--defense {text!r}: use jpeg:QUALITY, median:SIZE, bits:N or noise:SIGMA (e.g. jpeg:75, median:3, bits:4, noise:0.25)")
    low, high, meaning = KINDS[kind]
    number = int(value)
    if not low <= number <= high or (kind == "median" and number % 2 == 0):
        raise UsageError(f"--defense {text}: the {meaning} must be {'an odd number ' if kind == 'median' else ''}from {low} to {high}")
    return InputFilter(kind, number)


def _noise(x, sigma: float):
    """Gaussian noise, drawn anew on every call (randomised smoothing's base step)."""
    import torch

    return x + sigma * torch.randn_like(x)


def _bits(x, bits: int):
    import torch

    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def _median(x, size: int):
    import torch.nn.functional as F

    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)
    return windows.reshape(*windows.shape[:4], -1).median(dim=-1).values


def _jpeg(x, quality: int):
    import io

    import numpy as np
    import torch
    from PIL import Image

    out = []
    for image in x.detach().clamp(0, 1).cpu():
        pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        decoded = np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), copy=True)
        out.append(torch.from_numpy(decoded).permute(2, 0, 1).float() / 255)
    return torch.stack(out).to(x.device, x.dtype)
