"""Tiny inputs of every kind a recipe reads: an image, a clip, a text, a COCO folder. For
`ptcli plugins check` and ptcli.plugins.testing; this module needs no pytest (a user's machine may not
have it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def write_image(path: Path, size: Sequence[int] = (32, 24), seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_clip(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate)
    return path


def write_coco(root: Path, images: int = 4) -> Path:
    """root/images/*.png with one square each, and train.json, val.json (COCO; category 1 "square")."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries, annotations = [], []
    for i in range(1, images + 1):
        pixels = rng.integers(60, 200, size=(48, 64, 3), dtype=np.uint8)
        x, y = int(rng.integers(0, 40)), int(rng.integers(0, 24))
        pixels[y: y + 16, x: x + 16] = (220, 40, 40)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        entries.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 48})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, 16, 16], "area": 256.0, "iscrowd": 0})
    half = images // 2
    for name, part in (("train", slice(0, max(half, 1))), ("val", slice(max(half, 1), None))):
        chosen = entries[part]
        ids = {e["id"] for e in chosen}
        data = {"images": chosen, "annotations": [a for a in annotations if a["image_id"] in ids],
                "categories": [{"id": 1, "name": "square"}]}
        (root / f"{name}.json").write_text(json.dumps(data))
    return root


TINY_TEXT = "The food was good and the service quick."
