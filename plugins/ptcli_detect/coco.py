"""COCO detection data: reading and checking an annotation file, category ids to the
contiguous labels a detector trains on (and back), and masks to and from COCO's encodings
(through faster-coco-eval's mask API, pycocotools' maintained twin)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ptcli.errors import UsageError

#: A box may overrun its image by this much (pixels) before it is an error: annotation tools
#: write boxes to the pixel edge, x + w == width, and round half a pixel either way.
EDGE_TOLERANCE = 1.0


@dataclass
class CocoImage:
    id: int
    path: Path
    width: int
    height: int
    #: Boxes as [x, y, w, h] in pixels, with their category ids, areas, crowd flags and
    #: segmentations (polygons or RLE; None when the annotation has none).
    boxes: list[list[float]] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    iscrowd: list[int] = field(default_factory=list)
    segmentations: list = field(default_factory=list)


@dataclass
class CocoSet:
    source: Path
    images: list[CocoImage]
    #: (category id, name), sorted by id: label i + 1 is categories[i].
    categories: list[tuple[int, str]]

    @property
    def names(self) -> list[str]:
        return [name for _, name in self.categories]

    @property
    def category_ids(self) -> list[int]:
        return [cid for cid, _ in self.categories]

    def label_of(self) -> dict[int, int]:
        """category id -> contiguous label (1..K; 0 is the background)."""
        return {cid: i + 1 for i, (cid, _) in enumerate(self.categories)}


def _require(obj: dict, key: str, where: str, source: Path):
    if not isinstance(obj, dict) or key not in obj:
        raise UsageError(f"{source} is not a COCO annotation file: {where} has no {key!r} key")
    return obj[key]


def read_coco(source: Path, images_dir: Path | None = None, *, check_files: bool = True) -> CocoSet:
    """Read and check a COCO annotation file; image files are looked for under ``images_dir``
    (default: the ``images/`` folder beside the file, or the file's own folder)."""
    source = Path(source)
    if not source.is_file():
        raise UsageError(f"annotation file not found: {source}")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{source} is not a COCO annotation file: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source} is not a COCO annotation file: the top level is not an object")
    for key in ("images", "annotations", "categories"):
        _require(data, key, "the file", source)
    if images_dir is None:
        images_dir = source.parent / "images" if (source.parent / "images").is_dir() else source.parent
    categories = []
    for number, category in enumerate(data["categories"]):
        cid, name = _require(category, "id", f"category {number}", source), _require(category, "name", f"category {number}", source)
        categories.append((int(cid), str(name)))
    categories.sort()
    known = {cid for cid, _ in categories}
    if len(known) != len(categories):
        raise UsageError(f"{source}: two categories share an id")
    by_id: dict[int, CocoImage] = {}
    for number, entry in enumerate(data["images"]):
        where = f"image {number}"
        image = CocoImage(int(_require(entry, "id", where, source)), Path(images_dir) / str(_require(entry, "file_name", where, source)),
                          int(_require(entry, "width", where, source)), int(_require(entry, "height", where, source)))
        if check_files and not image.path.is_file():
            raise UsageError(f"{source}: image {image.id} is listed as {entry['file_name']} but {image.path} does not exist")
        by_id[image.id] = image
    for number, annotation in enumerate(data["annotations"]):
        where = f"annotation {annotation.get('id', number) if isinstance(annotation, dict) else number}"
        image_id = int(_require(annotation, "image_id", where, source))
        cid = int(_require(annotation, "category_id", where, source))
        x, y, w, h = (float(v) for v in _require(annotation, "bbox", where, source))
        if image_id not in by_id:
            raise UsageError(f"{source}: {where} belongs to image {image_id}, which is not in 'images'")
        if cid not in known:
            raise UsageError(f"{source}: {where} has category_id {cid}, which is not in 'categories' "
                             f"({', '.join(str(c) for c in sorted(known))})")
        image = by_id[image_id]
        if w <= 0 or h <= 0:
            raise UsageError(f"{source}: {where} in image {image_id} ({image.path.name}) has a box with no area: "
                             f"[{x:g}, {y:g}, {w:g}, {h:g}]")
        if x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + w > image.width + EDGE_TOLERANCE or y + h > image.height + EDGE_TOLERANCE:
            raise UsageError(f"{source}: {where} in image {image_id} ({image.path.name}) has a box "
                             f"[{x:g}, {y:g}, {w:g}, {h:g}] outside the {image.width}x{image.height} image")
        x0, y0 = max(x, 0.0), max(y, 0.0)
        image.boxes.append([x0, y0, min(x + w, image.width) - x0, min(y + h, image.height) - y0])
        image.category_ids.append(cid)
        image.areas.append(float(annotation.get("area", w * h)))
        image.iscrowd.append(int(annotation.get("iscrowd", 0)))
        image.segmentations.append(annotation.get("segmentation"))
    return CocoSet(source, list(by_id.values()), categories)


def rle_encode(mask) -> dict:
    """A boolean (H, W) mask as COCO's compressed RLE ({"size": [h, w], "counts": str})."""
    import numpy as np
    from faster_coco_eval.core import mask as mask_api

    encoded = mask_api.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    counts = encoded["counts"]
    return {"size": [int(v) for v in encoded["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def rle_decode(rle: dict):
    import numpy as np
    import torch
    from faster_coco_eval.core import mask as mask_api

    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        rle = mask_api.frPyObjects(rle, *rle["size"])
    elif isinstance(counts, str):
        rle = {"size": rle["size"], "counts": counts.encode("ascii")}
    return torch.from_numpy(np.ascontiguousarray(mask_api.decode(rle))).bool()


def segmentation_mask(segmentation, width: int, height: int, box: list[float]):
    """An annotation's mask (bool (H, W) tensor): its polygons or RLE, or its box when it has
    neither."""
    import numpy as np
    import torch
    from faster_coco_eval.core import mask as mask_api

    if isinstance(segmentation, dict):
        return rle_decode(segmentation)
    if isinstance(segmentation, list) and segmentation:
        rles = mask_api.frPyObjects(segmentation, height, width)
        merged = mask_api.merge(rles) if isinstance(rles, list) else rles
        return torch.from_numpy(np.ascontiguousarray(mask_api.decode(merged))).bool()
    canvas = torch.zeros((height, width), dtype=torch.bool)
    x, y, w, h = (int(round(v)) for v in box)
    canvas[y: y + h, x: x + w] = True
    return canvas
