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


class LoadForDetection:
    """read, then the tensor, with the image's size and path as the sample's metadata (a class:
    it pickles for DataLoader workers)."""

    def __init__(self, adapter: DetectionImages) -> None:
        self.adapter = adapter

    def __call__(self, path: Path):
        from ptcli.batching import Sample
        from ptcli.imaging import to_pixels

        image = self.adapter.read(path)
        return Sample(to_pixels(image), {"width": image.width, "height": image.height, "path": path})
