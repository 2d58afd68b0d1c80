"""Super-resolution tile by tile: the image stays in CPU memory and one tile at a time goes to
the device. The image is cut into a grid of ``tile``-pixel cells; each cell is processed with
``overlap`` pixels of its neighbours around it, so neighbouring tiles overlap by twice that.
Inside the overlap each tile's output is weighted by a ramp that falls towards its edge, so
neighbours cross-fade and no seam shows. The weight of a tile is a product of a row ramp and a
column ramp, so the normalising sum is two vectors, not a second image."""

from __future__ import annotations

from collections.abc import Callable


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of each padded tile along one axis."""
    cells = max(1, -(-length // tile))
    return [(max(0, i * tile - overlap), min(length, (i + 1) * tile + overlap)) for i in range(cells)]


def _ramp(length: int, fade: int, at_start: bool, at_end: bool):
    """1 inside, rising from near 0 over ``fade`` pixels on the sides that meet another tile
    (the rise of one tile and the fall of its neighbour add up to 1)."""
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


#: RRDBNet at x2 (x1) folds its input into 2x2 (4x4) blocks first: sides must divide by that.
_UNSHUFFLE = {1: 4, 2: 2}


def _forward(model: Callable, x, scale: int):
    """The model on a (B, C, h, w) batch of any size: padded at the bottom and right (edge
    pixels repeated) to the multiple RRDBNet's x2/x1 input fold needs, the result cut back."""
    import torch.nn.functional as F

    import torch

    multiple = _UNSHUFFLE.get(scale, 1)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    # channels_last, as the model's weights are (see command.py): RRDBNet's convolutions run
    # 1.5-1.9x faster so on the CPU.
    return model(x.contiguous(memory_format=torch.channels_last))[:, :, : height * scale, : width * scale]


def grid(height: int, width: int, tile: int | None, overlap: int) -> tuple[list, list]:
    """(row spans, column spans) of the padded tiles; one span each when the image is one tile."""
    if tile is None or (height <= tile and width <= tile):
        return [(0, height)], [(0, width)]
    return _spans(height, tile, overlap), _spans(width, tile, overlap)


def crops(image, rows: list, cols: list) -> list:
    """The padded tiles of a CHW image, row by row (views: nothing is copied)."""
    return [image[:, top:bottom, left:right] for top, bottom in rows for left, right in cols]


def run_tiles(model: Callable, pieces, *, scale: int, device, dtype=None, on_tile: Callable[[], None] | None = None):
    """Each tile's result (CHW, float32 on the CPU) as it is computed, one tile on the device at a time."""
    import torch

    for piece in pieces:
        with torch.inference_mode():
            result = _forward(model, piece[None].to(device, dtype=dtype), scale)[0].float().cpu()
        if on_tile:
            on_tile()
        yield result


def stitch(shape: tuple, rows: list, cols: list, *, scale: int, overlap: int, results):
    """The tiles' results (in ``crops`` order, consumed one at a time: memory holds the output
    and one tile) cross-faded into the whole upscaled image (CHW, float32)."""
    import torch

    channels, height, width = shape
    out = torch.zeros(channels, height * scale, width * scale)
    row_weight = torch.zeros(height * scale)
    col_weight = torch.zeros(width * scale)
    fade = 2 * overlap * scale
    col_ramps = [_ramp((right - left) * scale, fade, j > 0, j < len(cols) - 1) for j, (left, right) in enumerate(cols)]
    for (left, right), cw in zip(cols, col_ramps):
        col_weight[left * scale:right * scale] += cw
    results = iter(results)
    for i, (top, bottom) in enumerate(rows):
        rw = _ramp((bottom - top) * scale, fade, i > 0, i < len(rows) - 1)
        row_weight[top * scale:bottom * scale] += rw
        for (left, right), cw in zip(cols, col_ramps):
            out[:, top * scale:bottom * scale, left * scale:right * scale] += next(results) * rw[:, None] * cw[None, :]
    out /= row_weight[:, None]
    out /= col_weight[None, :]
    return out


def upscale(image, model: Callable, *, scale: int, tile: int | None, overlap: int, device, dtype=None,
            on_tile: Callable[[], None] | None = None):
    """``image``: CHW float tensor on the CPU. Returns the CHW result on the CPU (float32)."""
    rows, cols = grid(image.shape[1], image.shape[2], tile, overlap)
    if len(rows) == len(cols) == 1:  # one tile: the model's own output, as it is
        return next(run_tiles(model, [image], scale=scale, device=device, dtype=dtype, on_tile=on_tile))
    results = run_tiles(model, crops(image, rows, cols), scale=scale, device=device, dtype=dtype, on_tile=on_tile)
    return stitch(tuple(image.shape), rows, cols, scale=scale, overlap=overlap, results=results)


def tile_count(height: int, width: int, tile: int | None, overlap: int) -> int:
    if tile is None or (height <= tile and width <= tile):
        return 1
    return len(_spans(height, tile, overlap)) * len(_spans(width, tile, overlap))


def auto_tile(device, height: int, width: int, num_feat: int = 64) -> int | None:
    """A tile size that fits: from free GPU memory on CUDA (RRDBNet keeps about 10 feature maps
    of num_feat channels per input pixel alive, in fp32), 128 on other devices, None (whole
    image) when the image is smaller. On 2 CPU cores 128 px tiles cost the same time per pixel
    as 256 px ones and a third less peak memory (a 2048x2048 x4 upscale with the 23-block
    model: 1.79 against 2.36 GB; bench/sr_tiling.py)."""
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_pixel = num_feat * 4 * 10 * 16  # x16: the upsampled stages at scale 4
        side = int((free * 0.5 / per_pixel) ** 0.5)
        tile = max(64, min(2048, side // 32 * 32))
    else:
        tile = 128
    return None if height <= tile and width <= tile else tile
