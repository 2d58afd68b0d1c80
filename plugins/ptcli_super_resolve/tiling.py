"""Super-resolution tile by tile: the image stays in CPU memory and one tile at a time goes to
the device. The image is cut into a grid of ``tile``-pixel cells; each cell is processed with
``overlap`` pixels of its neighbours around it, and only the cell's own part of the output is
kept (as Real-ESRGAN's tiler does). The padding is discarded rather than cross-faded because
its outermost pixels are exactly where a convolution stack sees zeros instead of the image:
any weight given to them shows (a cross-fade over the padding was off by up to 10 grey levels
on a network whose output spans the range). Every kept pixel is at least ``overlap`` input
pixels from a tile edge that is not also the image's edge."""

from __future__ import annotations

from collections.abc import Callable


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of each padded tile along one axis."""
    cells = max(1, -(-length // tile))
    return [(max(0, i * tile - overlap), min(length, (i + 1) * tile + overlap)) for i in range(cells)]


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


def _kept(spans: list, length: int, tile: int, scale: int) -> list[tuple[int, int, int]]:
    """For each padded span: (where its kept part starts in the output, where it starts in the
    tile's output, its length), all in output pixels. The kept part is the tile's own cell."""
    kept = []
    for i, (start, _) in enumerate(spans):
        cell_start, cell_end = i * tile, min(length, (i + 1) * tile)
        kept.append((cell_start * scale, (cell_start - start) * scale, (cell_end - cell_start) * scale))
    return kept


def stitch(shape: tuple, rows: list, cols: list, *, scale: int, tile: int, results):
    """The tiles' results (in ``crops`` order, consumed one at a time: memory holds the output
    and one tile), each cell's own part put in its place: the whole upscaled image (CHW, float32)."""
    import torch

    channels, height, width = shape
    out = torch.zeros(channels, height * scale, width * scale)
    row_parts, col_parts = _kept(rows, height, tile, scale), _kept(cols, width, tile, scale)
    results = iter(results)
    for top, source_top, rows_kept in row_parts:
        for left, source_left, cols_kept in col_parts:
            result = next(results)
            out[:, top:top + rows_kept, left:left + cols_kept] = \
                result[:, source_top:source_top + rows_kept, source_left:source_left + cols_kept]
    return out


def upscale(image, model: Callable, *, scale: int, tile: int | None, overlap: int, device, dtype=None,
            on_tile: Callable[[], None] | None = None):
    """``image``: CHW float tensor on the CPU. Returns the CHW result on the CPU (float32)."""
    rows, cols = grid(image.shape[1], image.shape[2], tile, overlap)
    if len(rows) == len(cols) == 1:  # one tile: the model's own output, as it is
        return next(run_tiles(model, [image], scale=scale, device=device, dtype=dtype, on_tile=on_tile))
    results = run_tiles(model, crops(image, rows, cols), scale=scale, device=device, dtype=dtype, on_tile=on_tile)
    return stitch(tuple(image.shape), rows, cols, scale=scale, tile=tile, results=results)


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
