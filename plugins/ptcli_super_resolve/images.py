"""Reading and writing images for super-resolution. 8-bit images and 16-bit greyscale go through
Pillow; 16-bit colour PNGs through OpenCV (a basicsr dependency), as Pillow would cut them to 8
bits. Greyscale and RGBA become RGB for the model and are put back after (alpha upscaled on
its own, bicubic); a 16-bit input gives a 16-bit output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptcli.errors import InputError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class SRImage:
    """RGB as a float CHW tensor in [0, 1], the alpha channel if any, and how to write it back."""

    rgb: Any
    alpha: Any | None
    grey: bool
    bits: int

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[2]), int(self.rgb.shape[1])


def _png_bit_depth(source: Path | bytes) -> int:
    """The bit depth a PNG declares in its header (0 for other files)."""
    if isinstance(source, bytes):
        head = source[:25]
    else:
        with open(source, "rb") as handle:
            head = handle.read(25)
    return head[24] if len(head) == 25 and head.startswith(b"\x89PNG\r\n\x1a\n") else 0


def _decode(path: Path | bytes):
    """HxW or HxWxC (RGB or RGBA) array, uint8 or uint16, from a file or its bytes. Pillow decodes (and catches truncated
    files, which OpenCV would half-decode with only a warning); OpenCV reads 16-bit colour PNGs,
    which Pillow would cut to 8 bits."""
    import io

    import numpy as np

    from ptcli.vision.imaging import open_image, to_rgb

    image = open_image(io.BytesIO(path) if isinstance(path, bytes) else path)
    if image.mode.startswith("I;16") or (image.mode == "I" and int(np.asarray(image).max(initial=0)) > 255):
        return np.asarray(image, dtype=np.int64).clip(0, 65535).astype(np.uint16)
    if _png_bit_depth(path) == 16:
        import cv2

        data = cv2.imdecode(np.frombuffer(path, np.uint8), cv2.IMREAD_UNCHANGED) if isinstance(path, bytes) \
            else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise InputError("cannot read image: OpenCV cannot decode this 16-bit PNG")
        return data[:, :, [2, 1, 0, 3]] if data.ndim == 3 and data.shape[2] == 4 else data[:, :, ::-1] if data.ndim == 3 else data
    if image.mode in ("LA", "PA", "RGBA") or (image.mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("RGBA"))
    if image.mode in ("L", "1", "I", "F"):
        return np.asarray(to_rgb(image).convert("L"))
    return np.asarray(to_rgb(image))


class SRImages:
    """The data adapter: one file to an SRImage."""

    extensions = EXTENSIONS

    def read(self, path: Path | bytes) -> SRImage:
        """A file, its bytes (an upload), or a video's frame."""
        import numpy as np
        import torch

        from ptcli.video.frames import Frame

        if isinstance(path, Frame):
            data = np.asarray(path.image, dtype=np.uint8)
        else:
            data = _decode(path if isinstance(path, bytes) else Path(path))
        bits = 16 if data.dtype == np.uint16 else 8
        array = data.astype(np.float32) / (65535.0 if bits == 16 else 255.0)
        grey, alpha = array.ndim == 2, None
        if grey:
            rgb = np.repeat(array[:, :, None], 3, axis=2)
        elif array.shape[2] == 4:
            rgb, alpha = array[:, :, :3], array[:, :, 3]
        else:
            rgb = array
        tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        return SRImage(tensor, torch.from_numpy(alpha.copy()) if alpha is not None else None, grey, bits)


def resize(tensor, size: tuple[int, int]):
    """Bicubic resize of a CHW (or HW) tensor to (width, height)."""
    import torch.nn.functional as F

    squeeze = tensor.dim() == 2
    x = tensor[None, None] if squeeze else tensor[None]
    out = F.interpolate(x, size=(size[1], size[0]), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    return out[0, 0] if squeeze else out[0]


def to_array(rgb, alpha, *, grey: bool, bits: int):
    """The result as the integer array OpenCV writes (BGR, or grey, with alpha if any)."""
    import cv2
    import numpy as np

    scale = 65535.0 if bits == 16 else 255.0
    dtype = np.uint16 if bits == 16 else np.uint8
    # Band by band into one integer image: a float copy of the whole result (0.8 GB for an
    # 8192x8192 RGB) would double the peak memory of a large upscale.
    height, width = rgb.shape[1:]
    array = np.empty((height, width, 3), dtype)
    for top in range(0, height, 256):
        band = rgb[:, top:top + 256].clamp(0, 1).mul_(scale).round_().numpy().astype(dtype).transpose(1, 2, 0)
        array[top:top + 256] = band if grey else band[:, :, ::-1]  # OpenCV writes BGR
    if grey:
        return cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)
    if alpha is not None:
        a = alpha.clamp(0, 1).mul(scale).round().numpy().astype(dtype)
        return np.dstack([array, a])
    return array


def png_bytes(rgb, alpha, *, grey: bool, bits: int) -> bytes:
    """The result as a PNG file's bytes: the same pixels ``write`` puts in a .png."""
    import cv2

    ok, data = cv2.imencode(".png", to_array(rgb, alpha, grey=grey, bits=bits))
    if not ok:
        raise InputError("cannot encode the result as PNG")
    return data.tobytes()


def encoded(rgb, alpha, ending: str, *, grey: bool, bits: int) -> bytes:
    """The result as a file's bytes in the format of ``ending`` (.png, .jpg, .webp, .tif...):
    the same pixels ``write`` puts in such a file, 16 bits where the format holds them."""
    import cv2

    if bits == 16 and ending.lower() not in (".png", ".tif", ".tiff"):
        bits = 8  # other formats hold 8 bits
    ok, data = cv2.imencode(ending, to_array(rgb, alpha, grey=grey, bits=bits))
    if not ok:
        raise InputError(f"cannot encode the result as {ending}: OpenCV has no encoder for it")
    return data.tobytes()


def write(path: Path, rgb, alpha, *, grey: bool, bits: int) -> None:
    import cv2

    if bits == 16 and path.suffix.lower() not in (".png", ".tif", ".tiff"):
        bits = 8  # other formats hold 8 bits
    out = to_array(rgb, alpha, grey=grey, bits=bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), out):
        raise InputError(f"cannot write {path}: OpenCV has no writer for {path.suffix}")
