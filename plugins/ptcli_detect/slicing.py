"""Sliced inference for large images (what SAHI adds to other detectors), batched: the image
is cut into overlapping square tiles at full resolution, every tile goes through the model in
batches, and the whole image goes through once more at the model's own scale (for the large
objects no tile holds whole). Boxes are mapped back to the image and merged across tiles.

Why it works: a detector resizes its input (torchvision's R-CNNs: short side to 800 px), so in
a 4000 px photo a 12 px object shrinks to a few pixels; inside a 640 px tile it grows instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .detections import Detections, union


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int


def _starts(length: int, size: int, step: int) -> list[int]:
    """Tile starts along one axis: every ``step``, the last moved back so it ends at the edge
    (every tile is full-sized, so tiles batch together)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    return starts + [length - size]


def tile_grid(width: int, height: int, size: int, overlap: float) -> list[Tile]:
    """Overlapping ``size`` x ``size`` tiles covering the image, neighbours sharing
    ``overlap`` of a tile (a fraction in [0, 1))."""
    step = max(1, size - round(size * overlap))
    tile_w, tile_h = min(size, width), min(size, height)
    return [Tile(x, y, tile_w, tile_h) for y in _starts(height, size, step) for x in _starts(width, size, step)]


def box_ios(box, boxes):
    """Intersection over the smaller box's area: high when one box lies mostly inside another
    (the part of an object a tile cut off, inside the whole object's box)."""
    import torch

    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).clamp(min=0).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    return inter / torch.minimum(area, areas).clamp(min=1e-6)


def greedy_merge(detections: Detections, threshold: float = 0.5, cut=None) -> Detections:
    """SAHI's greedy non-maximum merging, class aware: from the highest score down, each box
    absorbs the not-yet-taken boxes of its class that overlap it by IoS above ``threshold``,
    keeping the highest score. A best box that no tile edge cut (``cut``, from merge_tiles)
    stays as it is: the boxes it absorbs are views of the same object, and joining them made
    a tight box twice the object's size (SAHI's plain union). A best box that is a piece of an
    object a tile edge cut is joined with the rest (their union box). Without ``cut``, every
    box counts as a piece (the union, as SAHI)."""
    import torch

    if len(detections) == 0:
        return detections
    boxes, scores, labels = detections.boxes, detections.scores, detections.labels
    cut = torch.ones(len(detections), dtype=torch.bool) if cut is None else cut
    taken = torch.zeros(len(detections), dtype=torch.bool)
    merged_boxes, keep, masks = [], [], []
    for i in scores.argsort(descending=True, stable=True).tolist():
        if taken[i]:
            continue
        taken[i] = True
        candidates = ((labels == labels[i]) & ~taken).nonzero().flatten()
        members = candidates[box_ios(boxes[i], boxes[candidates]) > threshold] if len(candidates) else candidates
        taken[members] = True
        group = torch.cat([torch.tensor([i]), members]) if cut[i] else torch.tensor([i])
        merged_boxes.append(torch.cat([boxes[group, :2].min(dim=0).values, boxes[group, 2:].max(dim=0).values]))
        keep.append(i)
        if detections.masks is not None:
            masks.append(union([detections.masks[j] for j in group.tolist()]))
    result = detections.select(keep)
    result.boxes = torch.stack(merged_boxes)
    if detections.masks is not None:
        result.masks = masks
    return result


def nms_merge(detections: Detections, threshold: float = 0.5, cut=None) -> Detections:
    """Class-aware non-maximum suppression at IoU ``threshold``: keeps the best box of each
    cluster as it is."""
    from torchvision.ops import batched_nms

    if len(detections) == 0:
        return detections
    return detections.select(batched_nms(detections.boxes, detections.scores, detections.labels, threshold))


MERGES = {"greedy": greedy_merge, "nms": nms_merge}


def tile_crops(image, size: int, overlap: float, whole_image: bool = True) -> tuple[list[Tile], list]:
    """(the tiles of ``image`` (a CHW tensor), the crops to detect in): each tile at full
    resolution, then, when there are several (and ``whole_image``), the whole image."""
    tiles = tile_grid(int(image.shape[-1]), int(image.shape[-2]), size, overlap)
    crops = [image[:, t.y: t.y + t.height, t.x: t.x + t.width] for t in tiles]
    return tiles, crops + [image] if whole_image and len(tiles) > 1 else crops


def merge_tiles(tiles: list[Tile], outputs: list[Detections], merge: str = "greedy",
                match_threshold: float = 0.5) -> Detections:
    """The crops' detections (``tile_crops`` order) shifted back into the image and merged."""
    import torch

    parts = [found.shifted(tile.x, tile.y) for tile, found in zip(tiles, outputs)] + list(outputs[len(tiles):])
    width, height = max(t.x + t.width for t in tiles), max(t.y + t.height for t in tiles)
    cut = [cut_by_tile(found.boxes, tile, width, height) for tile, found in zip(tiles, outputs)]
    cut += [torch.zeros(len(found), dtype=torch.bool) for found in outputs[len(tiles):]]  # the whole image cuts nothing
    return MERGES[merge](Detections.concat(parts), match_threshold, cut=torch.cat(cut) if cut else None)


def cut_by_tile(boxes, tile: Tile, width: int, height: int, margin: float = 2.0):
    """Which of a tile's boxes (in tile pixels) touch one of its edges inside the image: the
    part of an object the tile cut off, to be joined with the rest of it."""
    import torch

    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.bool)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return (((x1 <= margin) & (tile.x > 0)) | ((y1 <= margin) & (tile.y > 0))
            | ((x2 >= tile.width - margin) & (tile.x + tile.width < width))
            | ((y2 >= tile.height - margin) & (tile.y + tile.height < height)))


def detect_sliced(image, run: Callable[[list], list[Detections]], *, size: int, overlap: float, batch_size: int,
                  merge: str = "greedy", match_threshold: float = 0.5, whole_image: bool = True,
                  on_tiles: Callable[[int], None] | None = None) -> Detections:
    """Detections in ``image`` (a CHW tensor) from its tiles, ``batch_size`` tiles per forward
    pass, plus the whole image (``whole_image``), merged. ``run(list of CHW tensors)`` returns
    one Detections per tensor; ``on_tiles(n)`` hears of each batch done. (`ptcli detect` runs
    the same crops and merge through the core's chunked loop, ptcli.inference.runner.)"""
    tiles, crops = tile_crops(image, size, overlap, whole_image)
    outputs = []
    for start in range(0, len(tiles), batch_size):
        outputs.extend(run(crops[start: min(start + batch_size, len(tiles))]))
        if on_tiles is not None:
            on_tiles(min(batch_size, len(tiles) - start))
    if len(crops) > len(tiles):
        outputs.extend(run(crops[len(tiles):]))
    return merge_tiles(tiles, outputs, merge, match_threshold)
