"""Reading images from disk and turning them into the tensors a model expects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptcli.errors import InputError, one_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def to_rgb(image):
    """RGB for any mode; transparent pixels become white rather than whatever colour they hide."""
    from PIL import Image

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


class ImageFiles:
    """The data adapter: one image file to an upright RGB PIL image."""

    extensions = IMAGE_EXTENSIONS

    def read(self, path: Path):
        from PIL import Image, ImageOps

        try:
            with Image.open(path) as image:
                image.load()  # decoding happens here: truncated files fail now, per file
                return to_rgb(ImageOps.exif_transpose(image))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InputError(f"cannot read image: {one_line(exc)}") from exc


class Preprocess:
    """Resize the short side, centre-crop, scale to [0, 1] and normalise, as the model was trained."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import v2

        self.spec = dict(spec)
        interpolation = InterpolationMode(spec.get("interpolation", "bilinear"))
        self.transform = v2.Compose([
            v2.Resize(int(spec["resize"]), interpolation=interpolation, antialias=True),
            v2.CenterCrop(int(spec["crop"])),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(spec["mean"]), list(spec["std"])),
        ])

    def __call__(self, image):
        return self.transform(image)


class LoadImage:
    """read + preprocess, for DataLoader workers (a class, so it pickles under any start method)."""

    def __init__(self, adapter: ImageFiles, preprocess: Preprocess) -> None:
        self.adapter = adapter
        self.preprocess = preprocess

    def __call__(self, path: Path):
        return self.preprocess(self.adapter.read(path))
