"""ImageFolder data for training: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``
(or one folder split by a validation fraction), with the augmentation presets."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptcli.errors import UsageError

from .data import IMAGE_EXTENSIONS, ImageFiles, LoadImage

Sample = tuple[Path, int]


@dataclass
class Split:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """class name -> its image files, for every sub-folder of ``folder``."""
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found[sub.name] = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return found


def read_split(folder: Path, what: str) -> dict[str, list[Path]]:
    """class name -> images of one split folder; a missing or empty folder is a usage error."""
    if not folder.is_dir():
        raise UsageError(f"{what} folder not found: {folder}")
    classes = class_folders(folder)
    if not classes:
        raise UsageError(f"{folder} has no class folders; expected {folder}/<class>/<image files>")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise UsageError(f"class folder {folder / empty[0]} has no images ({', '.join(IMAGE_EXTENSIONS)}); add some or remove it")
    return classes


def scan(root: Path, train_dir: str = "train", val_dir: str = "val", val_fraction: float | None = None, seed: int = 0) -> Split:
    """Find classes and samples; every mistake in the layout is a usage error naming the folder."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"data.root not found: {root}")
    train = read_split(root / train_dir, "training")
    classes = list(train)
    index = {name: i for i, name in enumerate(classes)}
    val_folder = root / val_dir
    if val_folder.is_dir():
        if val_fraction is not None:
            raise UsageError(f"{val_folder} exists and data.val_fraction is set: use one or the other")
        val = read_split(val_folder, "validation")
        missing = [name for name in classes if name not in val]
        if missing:
            raise UsageError(f"class {missing[0]!r} has no folder in {val_folder}; add its validation images or set data.val_fraction instead")
        extra = [name for name in val if name not in index]
        if extra:
            raise UsageError(f"{val_folder / extra[0]} is a class that {root / train_dir} does not have")
        samples = lambda split: [(path, index[name]) for name in classes for path in split[name]]  # noqa: E731
        return Split(classes, samples(train), samples(val))
    if val_fraction is None:
        raise UsageError(f"no validation folder {val_folder}: add one, or set data.val_fraction=0.2 to hold out part of {root / train_dir}")
    rng = random.Random(seed)
    train_samples, val_samples = [], []
    for name in classes:
        files = list(train[name])
        if len(files) < 2:
            raise UsageError(f"class {name!r} has {len(files)} image; data.val_fraction needs at least 2 per class")
        rng.shuffle(files)
        held = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
        val_samples += [(p, index[name]) for p in sorted(files[:held])]
        train_samples += [(p, index[name]) for p in sorted(files[held:])]
    return Split(classes, train_samples, val_samples)


class ImageDataset:
    """(image tensor, class index) pairs; unreadable images fail with their path."""

    def __init__(self, samples: Sequence[Sample], transform) -> None:
        self.samples = list(samples)
        self.load = LoadImage(ImageFiles(), transform)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from ptcli.errors import InputError

        path, label = self.samples[i]
        try:
            return self.load(path), label
        except InputError as exc:
            raise InputError(f"{path}: {exc}; fix or remove the file") from None


def transforms(preprocessing: Mapping[str, Any], augment: str = "none"):
    """The training transform for an augmentation preset: none (as evaluation), light (random
    crop and horizontal flip) or book (random resized crop, flip, colour jitter, rotation; ch. 4)."""
    import torch
    from torchvision.transforms import InterpolationMode, v2

    from .data import Preprocess

    if augment == "none":
        return Preprocess(preprocessing)
    size, resize = int(preprocessing["crop"]), int(preprocessing["resize"])
    interpolation = InterpolationMode(preprocessing.get("interpolation", "bilinear"))
    if augment == "light":
        geometry = [v2.Resize(resize, interpolation=interpolation, antialias=True), v2.RandomCrop(size), v2.RandomHorizontalFlip()]
    else:
        geometry = [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=interpolation, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
            v2.RandomRotation(15),
        ]
    return v2.Compose([
        *geometry,
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(preprocessing["mean"]), list(preprocessing["std"])),
    ])


def channel_stats(samples: Sequence[Sample], preprocessing: Mapping[str, Any], limit: int = 500) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the (resized, cropped) training images, from up to ``limit``."""
    import torch

    from .data import Preprocess

    plain = Preprocess({**preprocessing, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
    chosen = samples if len(samples) <= limit else random.Random(0).sample(list(samples), limit)
    dataset = ImageDataset(chosen, plain)
    total, squares, pixels = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for i in range(len(dataset)):
        image, _ = dataset[i]
        flat = image.double().flatten(1)
        total += flat.sum(1)
        squares += (flat**2).sum(1)
        pixels += flat.shape[1]
    mean = total / pixels
    std = (squares / pixels - mean**2).clamp_min(1e-12).sqrt()
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]
