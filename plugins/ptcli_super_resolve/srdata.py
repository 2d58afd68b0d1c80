"""Super-resolution training data: HR images with paired LR images (same file names), or HR
only with bicubic degradation on the fly; random aligned crops, flips and 90-degree turns."""

from __future__ import annotations

import random
from pathlib import Path

from ptcli.errors import UsageError

from .images import EXTENSIONS, SRImages


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise UsageError(f"no images in {folder}")
    return files


def pairs(hr_dir: Path, lr_dir: Path | None) -> list[tuple[Path, Path | None]]:
    hr = list_images(hr_dir)
    if lr_dir is None:
        return [(path, None) for path in hr]
    lr = {p.stem: p for p in list_images(lr_dir)}
    missing = [p.name for p in hr if p.stem not in lr]
    if missing:
        raise UsageError(f"{len(missing)} HR images have no LR image of the same name in {lr_dir} (e.g. {missing[0]}); "
                         "set data.lr_dir=null to make LR images by bicubic downscaling")
    return [(path, lr[path.stem]) for path in hr]


def split(items: list, fraction: float, seed: int) -> tuple[list, list]:
    chosen = set(random.Random(seed).sample(range(len(items)), max(1, round(len(items) * fraction))))
    if len(chosen) == len(items):
        raise UsageError(f"data.val_fraction={fraction} leaves no training images out of {len(items)}")
    return [x for i, x in enumerate(items) if i not in chosen], [x for i, x in enumerate(items) if i in chosen]


def bicubic_down(hr, scale: int):
    import torch.nn.functional as F

    return F.interpolate(hr[None], scale_factor=1 / scale, mode="bicubic", align_corners=False, antialias=True)[0].clamp_(0, 1)


def _load(hr_path: Path, lr_path: Path | None, scale: int):
    adapter = SRImages()
    hr = adapter.read(hr_path).rgb
    height, width = hr.shape[1] // scale * scale, hr.shape[2] // scale * scale
    hr = hr[:, :height, :width]
    if lr_path is None:
        return hr, bicubic_down(hr, scale)
    lr = adapter.read(lr_path).rgb
    if lr.shape[1] * scale != height or lr.shape[2] * scale != width:
        raise UsageError(f"{lr_path} is {lr.shape[2]}x{lr.shape[1]}; for x{scale} of {hr_path.name} it must be "
                         f"{width // scale}x{height // scale}")
    return hr, lr


class TrainCrops:
    """``repeat`` random crops per image per epoch (images are read once and kept)."""

    def __init__(self, items, *, scale: int, crop: int, repeat: int, augment: bool) -> None:
        self.images = [_load(hr, lr, scale) for hr, lr in items]
        self.scale, self.crop, self.repeat, self.augment = scale, crop, repeat, augment
        small = [hr for hr, _ in self.images if min(hr.shape[1:]) < crop]
        if small:
            raise UsageError(f"data.crop={crop} is larger than an HR image ({small[0].shape[2]}x{small[0].shape[1]})")

    def __len__(self) -> int:
        return len(self.images) * self.repeat

    def __getitem__(self, index: int):
        import torch

        hr, lr = self.images[index % len(self.images)]
        s, size = self.scale, self.crop // self.scale
        top = int(torch.randint(0, lr.shape[1] - size + 1, ()))
        left = int(torch.randint(0, lr.shape[2] - size + 1, ()))
        lr_crop = lr[:, top:top + size, left:left + size]
        hr_crop = hr[:, top * s:(top + size) * s, left * s:(left + size) * s]
        if self.augment:
            flip, turns = bool(torch.randint(0, 2, ())), int(torch.randint(0, 4, ()))
            if flip:
                lr_crop, hr_crop = lr_crop.flip(-1), hr_crop.flip(-1)
            lr_crop, hr_crop = lr_crop.rot90(turns, (1, 2)), hr_crop.rot90(turns, (1, 2))
        return lr_crop.contiguous(), hr_crop.contiguous()


class ValCrops:
    """The centre crop (``crop`` HR pixels, or the whole image if smaller) of each image, so that
    validation images batch together."""

    def __init__(self, items, *, scale: int, crop: int) -> None:
        self.items = []
        for hr, lr in (_load(h, l, scale) for h, l in items):
            size = min(crop, hr.shape[1], hr.shape[2]) // scale
            top, left = (lr.shape[1] - size) // 2, (lr.shape[2] - size) // 2
            self.items.append((lr[:, top:top + size, left:left + size].contiguous(),
                               hr[:, top * scale:(top + size) * scale, left * scale:(left + size) * scale].contiguous()))
        if len({lr.shape for lr, _ in self.items}) > 1:
            smallest = min(lr.shape[1] for lr, _ in self.items)
            self.items = [(lr[:, :smallest, :smallest], hr[:, :smallest * scale, :smallest * scale]) for lr, hr in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]
