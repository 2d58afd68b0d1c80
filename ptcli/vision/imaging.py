"""Reading image files for every image recipe: decoded now (a truncated file fails here, for
that file), upright (EXIF orientation), refused when larger than the pixel limit, and turned
into 8-bit RGB correctly from any Pillow mode (16-bit and 32-bit greyscale, float, CMYK,
palette, alpha), not by Pillow's ``convert("RGB")``, which clips a 16-bit image to white."""

from __future__ import annotations

import os
from pathlib import Path

from ptcli.errors import InputError, one_line

#: Pillow's own default (about 89 million pixels, a 9500 x 9500 image); PTCLI_MAX_IMAGE_PIXELS
#: raises or lowers it.
DEFAULT_MAX_PIXELS = 89_478_485

#: File endings of the images Pillow reads, for folder and glob inputs.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def max_pixels() -> int:
    value = os.environ.get("PTCLI_MAX_IMAGE_PIXELS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_PIXELS


def open_image(path: Path):
    """The decoded, upright PIL image; InputError for anything unreadable or too large."""
    from PIL import Image, ImageOps

    limit = max_pixels()
    # ptcli checks the size itself, from the header and before decoding (so a decompression bomb
    # never gets to allocate), and says the size and the way out; Pillow's own check would
    # only warn below twice its limit, and word its error as an attack.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > limit:
                raise InputError(f"image is {width}x{height} = {width * height / 1e6:.0f} million pixels, above the "
                                 f"limit of {limit / 1e6:.0f} million; set PTCLI_MAX_IMAGE_PIXELS to allow it")
            image.load()  # decoding happens here: truncated files fail now, per file
            return ImageOps.exif_transpose(image)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image: {one_line(exc)}") from exc


def _grey_to_8bit(image):
    """An 8-bit "L" image from 16-bit, 32-bit integer or float greyscale, by value range:
    integers above 255 are 16-bit (0..65535), floats up to 1.0 are [0, 1]."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image)
    if image.mode == "F":
        peak = float(np.nanmax(array)) if array.size else 0.0
        array = np.nan_to_num(array) * (255.0 if peak <= 1.0 else 1.0)
    elif image.mode.startswith("I;16") or (array.size and int(array.max()) > 255):
        array = array.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image):
    """8-bit RGB for any mode; transparent pixels become white rather than whatever colour they hide."""
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _grey_to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def read_image(item):
    """An upright 8-bit RGB PIL image from a file path or a file's bytes (an upload), as every
    image recipe reads its inputs, or a video's frame (ptcli.video.frames.Frame, decoded already);
    InputError, naming no buffer, when it cannot be read."""
    from ptcli.video.frames import Frame

    if isinstance(item, Frame):
        return item.image
    if isinstance(item, (bytes, bytearray)):
        import io
        import re

        try:
            return to_rgb(open_image(io.BytesIO(item)))
        except InputError as exc:  # Pillow names the buffer, which means nothing to a client
            raise InputError(re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the upload", str(exc))) from exc
    return to_rgb(open_image(item))


def to_pixels(image):
    """An RGB PIL image as a (3, H, W) float tensor in [0, 1]."""
    import numpy as np
    import torch

    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255)


def save_png(pixels, destination: Path) -> None:
    """A (3, H, W) tensor (uint8, or float in [0, 1]) as a PNG, written atomically."""
    import torch
    from PIL import Image

    from ptcli.files import atomic_write

    if pixels.dtype != torch.uint8:
        pixels = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    picture = Image.fromarray(pixels.permute(1, 2, 0).contiguous().cpu().numpy())
    atomic_write(destination, lambda tmp: picture.save(tmp, format="PNG"))
