"""Reading images for detection: any Pillow image, upright, as 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

from ptcli.vision.imaging import IMAGE_EXTENSIONS


class DetectionImages:
    """The data adapter: one file to an upright 8-bit RGB PIL image (see ptcli.vision.imaging)."""

    extensions = IMAGE_EXTENSIONS

    def read(self, path: Path | bytes):
        """A file, or its bytes (an upload)."""
        from ptcli.vision.imaging import read_image

        return read_image(path)
