"""Reading images for detection: any Pillow image, upright, as 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

from ptcli.imaging import IMAGE_EXTENSIONS


class DetectionImages:
    """The data adapter: one file to an upright 8-bit RGB PIL image (see ptcli.imaging)."""

    extensions = IMAGE_EXTENSIONS

    def read(self, path: Path):
        from ptcli.imaging import open_image, to_rgb

        return to_rgb(open_image(path))
