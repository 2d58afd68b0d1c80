"""Detections in one image's pixel space, whatever produced them: boxes (x1, y1, x2, y2),
scores, labels and, for Mask R-CNN, each object's mask as a crop around its box (so that
masks from tiles of a large image cost their box's size, not the image's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LocalMask:
    """A boolean mask whose top-left pixel is at (x, y) of the image."""

    x: int
    y: int
    pixels: Any  # (h, w) bool tensor

    def shifted(self, dx: int, dy: int) -> LocalMask:
        return LocalMask(self.x + dx, self.y + dy, self.pixels)

    def full(self, width: int, height: int):
        """The mask on a ``height`` x ``width`` canvas (bool tensor)."""
        import torch

        canvas = torch.zeros((height, width), dtype=torch.bool)
        h, w = self.pixels.shape
        x0, y0, x1, y1 = max(self.x, 0), max(self.y, 0), min(self.x + w, width), min(self.y + h, height)
        if x1 > x0 and y1 > y0:
            canvas[y0:y1, x0:x1] = self.pixels[y0 - self.y: y1 - self.y, x0 - self.x: x1 - self.x]
        return canvas


def union(masks: list[LocalMask]) -> LocalMask:
    import torch

    x0, y0 = min(m.x for m in masks), min(m.y for m in masks)
    x1 = max(m.x + m.pixels.shape[1] for m in masks)
    y1 = max(m.y + m.pixels.shape[0] for m in masks)
    canvas = torch.zeros((y1 - y0, x1 - x0), dtype=torch.bool)
    for m in masks:
        h, w = m.pixels.shape
        canvas[m.y - y0: m.y - y0 + h, m.x - x0: m.x - x0 + w] |= m.pixels
    return LocalMask(x0, y0, canvas)


@dataclass
class Detections:
    boxes: Any  # (N, 4) float, x1 y1 x2 y2 in image pixels
    scores: Any  # (N,)
    labels: Any  # (N,) int64
    masks: list[LocalMask] | None = field(default=None)

    @classmethod
    def empty(cls, with_masks: bool = False) -> Detections:
        import torch

        return cls(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), [] if with_masks else None)

    @classmethod
    def from_output(cls, output: dict, mask_threshold: float = 0.5) -> Detections:
        """A torchvision detector's output for one image (on any device), on the CPU; soft masks
        (N, 1, H, W) become boolean crops around their boxes."""
        boxes = output["boxes"].detach().float().cpu()
        masks = None
        if "masks" in output:
            soft = output["masks"].detach().cpu()
            masks = []
            height, width = soft.shape[-2:]
            for box, mask in zip(boxes.tolist(), soft):
                x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
                x1, y1 = min(int(box[2]) + 1, width), min(int(box[3]) + 1, height)
                masks.append(LocalMask(x0, y0, mask[0, y0:y1, x0:x1] > mask_threshold))
        return cls(boxes, output["scores"].detach().float().cpu(), output["labels"].detach().cpu(), masks)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, keep) -> Detections:
        import torch

        keep = torch.as_tensor(keep, dtype=torch.int64)
        masks = [self.masks[i] for i in keep.tolist()] if self.masks is not None else None
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], masks)

    def shifted(self, dx: int, dy: int) -> Detections:
        import torch

        offset = torch.tensor([dx, dy, dx, dy], dtype=self.boxes.dtype)
        masks = [m.shifted(dx, dy) for m in self.masks] if self.masks is not None else None
        return Detections(self.boxes + offset, self.scores, self.labels, masks)

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        import torch

        if not parts:
            return Detections.empty()
        masks = None if any(p.masks is None for p in parts) else [m for p in parts for m in p.masks]
        return Detections(torch.cat([p.boxes for p in parts]), torch.cat([p.scores for p in parts]),
                          torch.cat([p.labels for p in parts]), masks)

    def filtered(self, threshold: float, labels: set[int] | None, limit: int) -> Detections:
        """Score at least ``threshold``, label among ``labels`` (None: any), the ``limit`` best."""
        import torch

        keep = self.scores >= threshold
        if labels is not None:
            keep &= torch.isin(self.labels, torch.tensor(sorted(labels), dtype=self.labels.dtype))
        index = keep.nonzero().flatten()
        index = index[self.scores[index].argsort(descending=True, stable=True)][:limit]
        return self.select(index)
