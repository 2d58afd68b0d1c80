"""Super-resolution tile by tile: the image stays in CPU memory and one tile at a time goes to
the device. Tiles overlap; each tile's output is weighted by a ramp that falls towards its
edges inside the overlap, so neighbouring tiles cross-fade and no seam shows. The weight of a
tile is a product of a row ramp and a column ramp, so the normalising sum is two vectors,
not a second image."""

from __future__ import annotations

from collections.abc import Callable


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _ramp(length: int, fade: int, at_start: bool, at_end: bool):
    """1 inside, rising from near 0 over ``fade`` pixels on the sides that meet another tile."""
    import torch

    weight = torch.ones(length)
    fade = min(fade, length // 2)
    if fade > 0:
        rise = (torch.arange(fade, dtype=torch.float32) + 0.5) / fade
        if at_start:
            weight[:fade] = rise
        if at_end:
            weight[-fade:] = rise.flip(0)
    return weight


def upscale(image, model: Callable, *, scale: int, tile: int | None, overlap: int, device, dtype=None,
            on_tile: Callable[[], None] | None = None):
    """``image``: CHW float tensor on the CPU. Returns the CHW result on the CPU (float32)."""
    import torch

    channels, height, width = image.shape
    if tile is None or (height <= tile and width <= tile):
        with torch.inference_mode():
            x = image[None].to(device, dtype=dtype)
            out = model(x)[0].float().cpu()
        if on_tile:
            on_tile()
        return out
    overlap = min(overlap, tile // 2)
    out = torch.zeros(channels, height * scale, width * scale)
    row_weight = torch.zeros(height * scale)
    col_weight = torch.zeros(width * scale)
    rows, cols = _starts(height, tile, overlap), _starts(width, tile, overlap)
    fade = overlap * scale
    for i, top in enumerate(rows):
        h = min(tile, height - top)
        rw = _ramp(h * scale, fade, i > 0, i < len(rows) - 1)
        row_weight[top * scale:(top + h) * scale] += rw
        for j, left in enumerate(cols):
            w = min(tile, width - left)
            cw = _ramp(w * scale, fade, j > 0, j < len(cols) - 1)
            if i == 0:
                col_weight[left * scale:(left + w) * scale] += cw
            piece = image[:, top:top + h, left:left + w][None].to(device, dtype=dtype)
            with torch.inference_mode():
                result = model(piece)[0].float().cpu()
            out[:, top * scale:(top + h) * scale, left * scale:(left + w) * scale] += result * rw[:, None] * cw[None, :]
            if on_tile:
                on_tile()
    out /= row_weight[:, None]
    out /= col_weight[None, :]
    return out


def tile_count(height: int, width: int, tile: int | None, overlap: int) -> int:
    if tile is None or (height <= tile and width <= tile):
        return 1
    overlap = min(overlap, tile // 2)
    return len(_starts(height, tile, overlap)) * len(_starts(width, tile, overlap))


def auto_tile(device, height: int, width: int, num_feat: int = 64) -> int | None:
    """A tile size that fits: from free GPU memory on CUDA (RRDBNet keeps about 10 feature maps
    of num_feat channels per input pixel alive, in fp32), 512 on other devices, None (whole
    image) when the image is smaller."""
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_pixel = num_feat * 4 * 10 * 16  # x16: the upsampled stages at scale 4
        side = int((free * 0.5 / per_pixel) ** 0.5)
        tile = max(64, min(2048, side // 32 * 32))
    else:
        tile = 512
    return None if height <= tile and width <= tile else tile
