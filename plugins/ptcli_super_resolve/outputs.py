"""Where super-resolve's results go and whether they fit: the output file's name and format,
and the memory a result needs, checked before any work (the command and the predictor)."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import InputError, UsageError


#: What the output can be written as (OpenCV's writers), by file ending.
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def output_extension(ext: str | None) -> str:
    extension = (ext or "png").lower()
    extension = extension if extension.startswith(".") else "." + extension
    if extension not in OUTPUT_EXTENSIONS:
        raise UsageError(f"--ext {ext}: not a format super-resolve writes; use one of "
                         f"{', '.join(e[1:] for e in OUTPUT_EXTENSIONS)}")
    return extension


def output_path(source: Path, out_dir: Path, suffix: str, ext: str | None) -> Path:
    return out_dir / f"{source.stem}{suffix}{output_extension(ext)}"


#: Bytes per output pixel while a result is assembled and written: the float32 RGB result and
#: its 8/16-bit copies for the encoder (measured: about 18 bytes above the process's baseline for a
#: 1000x872 image at 4x), with room to spare.
BYTES_PER_OUTPUT_PIXEL = 24


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None: then nothing is refused up front."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_output_fits(size: tuple[int, int]) -> None:
    """Refuse, for this file alone, a result that cannot be held in memory, before any work."""
    needed, available = size[0] * size[1] * BYTES_PER_OUTPUT_PIXEL, available_memory()
    if available is not None and needed > available:
        raise InputError(f"the {size[0]}x{size[1]} result needs about {needed / 2**30:.1f} GB of memory and "
                         f"{available / 2**30:.1f} GB is available; use a smaller --scale or a smaller image")


def tile_setting(value) -> int | None | str:
    """--tile: a number of pixels (at least 16), auto or none."""
    if value == "auto":
        return "auto"
    if value in (None, "none", "0", 0):
        return None
    try:
        tile = int(value)
    except ValueError:
        raise UsageError(f"--tile must be a number of pixels, auto or none (got {value!r})") from None
    if tile < 16:
        raise UsageError("--tile must be at least 16 pixels")
    return tile
