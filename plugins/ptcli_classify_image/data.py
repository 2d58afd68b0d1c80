"""Reading images from disk and turning them into the tensors a model expects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptcli.vision.imaging import IMAGE_EXTENSIONS  # noqa: F401 (imagefolder imports it from here)


class ImageFiles:
    """The data adapter: one image file to an upright 8-bit RGB PIL image (any Pillow mode,
    16-bit greyscale included, see ptcli.vision.imaging)."""

    extensions = IMAGE_EXTENSIONS

    def read(self, path: Path | bytes):
        """A file, or its bytes (an upload)."""
        from ptcli.vision.imaging import read_image

        return read_image(path)


#: torchvision's InterpolationMode values and the Pillow filters it resizes PIL images with.
_PIL_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


class Preprocess:
    """Resize the short side, centre-crop, scale to [0, 1] and normalise, as the model was trained.

    The same arithmetic as torchvision's v2 Resize, CenterCrop, PILToTensor, ToDtype and
    Normalize on a PIL image (Pillow resizes in both; a test checks they agree bit for bit),
    written with Pillow and torch alone: importing torchvision costs about 1.3 s (it imports
    torch._dynamo), more than the rest of a one-photo run."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        import torch

        self.spec = dict(spec)
        self.resize, self.crop = int(spec["resize"]), int(spec["crop"])
        interpolation = str(spec.get("interpolation", "bilinear"))
        if interpolation not in _PIL_FILTERS:
            raise ValueError(f"interpolation {interpolation!r} is not one of {', '.join(_PIL_FILTERS)}")
        self.filter = _PIL_FILTERS[interpolation]
        self.mean = torch.tensor(list(spec["mean"]), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(spec["std"]), dtype=torch.float32).view(-1, 1, 1)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        short, long = min(width, height), max(width, height)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def resized(self, image):
        size = self.resized_size(*image.size)
        return image.resize(size, self.filter) if size != image.size else image

    def cropped(self, image):
        width, height = image.size
        if self.crop > width or self.crop > height:  # torchvision pads with zeros
            from PIL import Image

            padded = Image.new(image.mode, (max(width, self.crop), max(height, self.crop)))
            padded.paste(image, ((padded.width - width) // 2, (padded.height - height) // 2))
            image, (width, height) = padded, padded.size
        top, left = int(round((height - self.crop) / 2.0)), int(round((width - self.crop) / 2.0))
        return image.crop((left, top, left + self.crop, top + self.crop))

    def pixels(self, image):
        """Resized and cropped, in [0, 1] (3, crop, crop): what the network sees before normalising."""
        return self.tensor(self.cropped(self.resized(image)))

    @staticmethod
    def tensor(image):
        """A PIL image as a (3, h, w) float tensor in [0, 1], as it is."""
        import numpy as np
        import torch

        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).to(torch.float32).mul_(1.0 / 255)

    def of_crop(self, crop):
        """An image already resized and cropped (``cropped(resized(image))``), normalised."""
        return self.tensor(crop).sub_(self.mean).div_(self.std)

    def normalize(self, pixels):
        """(pixels - mean) / std, on (3, h, w) or (B, 3, h, w) tensors of any device."""
        shape = (-1, 1, 1)
        return (pixels - self.mean.to(pixels.device).view(shape)) / self.std.to(pixels.device).view(shape)

    def __call__(self, image):
        return self.pixels(image).sub_(self.mean).div_(self.std)


class LoadImage:
    """read + preprocess, for DataLoader workers (a class, so it pickles under any start method).
    ``pixels_only``: stop before normalising (an input filter comes first, see --defense)."""

    def __init__(self, adapter: ImageFiles, preprocess: Preprocess, pixels_only: bool = False) -> None:
        self.adapter = adapter
        self.preprocess = preprocess
        self.pixels_only = pixels_only

    def __call__(self, path: Path):
        image = self.adapter.read(path)
        return self.preprocess.pixels(image) if self.pixels_only else self.preprocess(image)
