"""Reading images for detection: any Pillow image, upright, as 8-bit RGB, and as the float
tensor in [0, 1] torchvision's detectors take (they resize and normalise it themselves)."""

from __future__ import annotations

from pathlib import Path

from ptcli.imaging import IMAGE_EXTENSIONS


class DetectionImages:
    """The data adapter: one file to an upright 8-bit RGB PIL image (see ptcli.imaging)."""

    extensions = IMAGE_EXTENSIONS

    def read(self, path: Path):
        from ptcli.imaging import open_image, to_rgb

        return to_rgb(open_image(path))


def to_tensor(image):
    """A PIL RGB image as a CHW float tensor in [0, 1]."""
    import numpy as np
    import torch

    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255)


class LoadForDetection:
    """read, then the tensor, with the image's size as the sample's metadata (picklable, for
    DataLoader workers)."""

    def __init__(self, adapter: DetectionImages) -> None:
        self.adapter = adapter

    def __call__(self, path: Path):
        from ptcli.batching import Sample

        image = self.adapter.read(path)
        return Sample(to_tensor(image), {"width": image.width, "height": image.height})
