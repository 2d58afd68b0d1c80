"""Small COCO detection sets for the detect tests, drawn here: solid squares and discs on
noise, boxes exact, masks as polygons. Category ids are not contiguous on purpose."""

from __future__ import annotations

import json
from pathlib import Path

#: (category id, name, colour): the ids 3, 7 and 12 must come back as 3, 7 and 12.
CATEGORIES = ((3, "square", (220, 40, 40)), (7, "disc", (40, 200, 60)), (12, "bar", (40, 60, 220)))


def _polygon(kind: str, x: int, y: int, size: int) -> list[float]:
    import math

    if kind == "disc":
        r, cx, cy = size / 2, x + size / 2, y + size / 2
        return [v for a in range(16) for v in (cx + r * math.cos(a * math.pi / 8), cy + r * math.sin(a * math.pi / 8))]
    height = size if kind == "square" else size // 3
    return [x, y, x + size, y, x + size, y + height, x, y + height]


def draw_scene(rng, width: int, height: int, count: int, min_size: int = 20, max_size: int = 48):
    """(image, annotations): ``count`` shapes that do not overlap, on blurred noise."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    noise = rng.integers(60, 200, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(noise).resize((width, height), Image.BILINEAR).filter(ImageFilter.GaussianBlur(2))
    pen = ImageDraw.Draw(image)
    placed, shapes = [], []
    for _ in range(count * 20):
        if len(shapes) == count:
            break
        cid, kind, colour = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        size = int(rng.integers(min_size, max_size + 1))
        x, y = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
        h = size if kind != "bar" else size // 3
        if any(x < px + pw + 4 and px < x + size + 4 and y < py + ph + 4 and py < y + h + 4 for px, py, pw, ph in placed):
            continue
        placed.append((x, y, size, h))
        if kind == "disc":
            pen.ellipse([x, y, x + size - 1, y + size - 1], fill=colour)
        else:
            pen.rectangle([x, y, x + size - 1, y + h - 1], fill=colour)
        shapes.append({"category_id": cid, "bbox": [x, y, size, h], "area": float(size * h), "iscrowd": 0,
                       "segmentation": [_polygon(kind, x, y, size)]})
    return image, shapes


def make_coco(root: Path, splits: dict[str, int], *, seed: int = 0, size=(160, 120), negatives: int = 1) -> Path:
    """root/images/*.png and root/<split>.json per split, plus root/annotations.json (all);
    the first ``negatives`` images of each split hold no objects."""
    import numpy as np

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": cid, "name": name} for cid, name, _ in CATEGORIES]
    everything = {"images": [], "annotations": [], "categories": categories}
    image_id = annotation_id = 0
    for split, count in splits.items():
        data = {"images": [], "annotations": [], "categories": categories}
        for i in range(count):
            image_id += 1
            width, height = size if i % 2 == 0 else size[::-1]
            picture, shapes = draw_scene(rng, width, height, 0 if i < negatives else int(rng.integers(1, 4)))
            name = f"{image_id:04d}.png"
            picture.save(root / "images" / name)
            data["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
            for shape in shapes:
                annotation_id += 1
                data["annotations"].append({"id": annotation_id, "image_id": image_id, **shape})
        (root / f"{split}.json").write_text(json.dumps(data))
        for key in ("images", "annotations"):
            everything[key] += data[key]
    (root / "annotations.json").write_text(json.dumps(everything))
    return root


def detect_config(tmp_path: Path, root: Path, **sections) -> dict:
    """A detect config that trains the Lite0 detector small and fast (min_size 96)."""
    config = {
        "recipe": "detect",
        "data": {"root": str(root), "augment": "light"},
        "model": {"name": "fasterrcnn_lite0_fpn", "min_size": 96, "max_size": 128, "fpn_channels": 32,
                  "anchor_sizes": [8, 16, 32, 64]},
        "trainer": {"epochs": 1, "batch_size": 2, "lr": 0.01, "device": "cpu"},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    }
    for key, values in sections.items():
        config[key] = {**config.get(key, {}), **values}
    return config
