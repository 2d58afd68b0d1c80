"""Copy-paste augmentation (Ghiasi et al. 2021, "Simple Copy-Paste"): objects cut out of other
training images by their masks (polygons, RLE, else their boxes) and pasted, rescaled, where
they overlap nothing, so that a small data set shows each class on many more backgrounds and
next to other objects. Draws come from torch's global generator, which the trainer seeds per
sample, so a resumed run pastes the same objects."""

from __future__ import annotations

from functools import lru_cache

#: Tries to place one object before it is given up.
TRIES = 20
#: Pixels kept free around every box, so that pasted objects do not touch.
MARGIN = 4


@lru_cache(maxsize=64)
def _picture(path):
    from ptcli.vision.imaging import open_image, to_rgb

    return to_rgb(open_image(path))


class CopyPaste:
    def __init__(self, coco, probability: float, max_objects: int = 3, scale: tuple[float, float] = (0.7, 1.4)) -> None:
        self.coco, self.probability, self.max_objects, self.scale = coco, probability, max_objects, scale
        self.donors = [(i, j) for i, image in enumerate(coco.images) for j in range(len(image.boxes))]

    def _draw(self, high: int) -> int:
        import torch

        return int(torch.randint(high, (1,)).item())

    def cut(self, donor: int, obj: int, factor: float):
        """(RGB crop, bool mask) of one object, rescaled by ``factor``."""
        import numpy as np
        from PIL import Image

        from .coco import segmentation_mask

        entry = self.coco.images[donor]
        x, y, w, h = (int(round(v)) for v in entry.boxes[obj])
        x, y = max(x, 0), max(y, 0)
        w, h = min(w, entry.width - x), min(h, entry.height - y)
        if w < 2 or h < 2:
            return None
        mask = segmentation_mask(entry.segmentations[obj], entry.width, entry.height, entry.boxes[obj]).numpy()[y:y + h, x:x + w]
        crop = _picture(entry.path).crop((x, y, x + w, y + h))
        size = (max(2, round(w * factor)), max(2, round(h * factor)))
        crop = crop.resize(size, Image.BILINEAR)
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
        return (crop, mask) if mask.any() else None

    def __call__(self, index: int, picture, taken: list[list[float]]):
        """Paste up to max_objects objects onto ``picture`` (a PIL image, changed in place) away
        from the [x, y, w, h] boxes in ``taken``. Returns the pasted objects as (box [x, y, w,
        h], category id, area, full-size bool mask)."""
        import numpy as np
        import torch
        from PIL import Image

        if not self.donors or float(torch.rand(1)) >= self.probability:
            return []
        width, height = picture.size
        occupied = [list(b) for b in taken]
        pasted = []
        for _ in range(1 + self._draw(self.max_objects)):
            donor, obj = self.donors[self._draw(len(self.donors))]
            if donor == index:
                continue
            low, high = self.scale
            cut = self.cut(donor, obj, low + (high - low) * float(torch.rand(1)))
            if cut is None:
                continue
            crop, mask = cut
            w, h = crop.size
            if w + 2 * MARGIN >= width or h + 2 * MARGIN >= height:
                continue
            for _ in range(TRIES):
                x, y = MARGIN + self._draw(width - w - 2 * MARGIN), MARGIN + self._draw(height - h - 2 * MARGIN)
                if all(x + w + MARGIN <= bx or bx + bw + MARGIN <= x or y + h + MARGIN <= by or by + bh + MARGIN <= y
                       for bx, by, bw, bh in occupied):
                    break
            else:
                continue
            picture.paste(crop, (x, y), Image.fromarray(mask.astype(np.uint8) * 255))
            rows, cols = np.nonzero(mask)
            box = [float(x + cols.min()), float(y + rows.min()), float(cols.max() - cols.min() + 1), float(rows.max() - rows.min() + 1)]
            full = torch.zeros((height, width), dtype=torch.bool)
            full[y:y + h, x:x + w] = torch.from_numpy(mask)
            occupied.append(box)
            pasted.append((box, self.coco.images[donor].category_ids[obj], float(mask.sum()), full))
        return pasted
