"""COCO data for training: a torch Dataset of (image, target) pairs in torchvision's detection
format, with transforms v2 moving boxes and masks with the image."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import InputError, UsageError

from .coco import CocoSet, read_coco, segmentation_mask


def coco_split(root: Path | None, annotations: Path | None, name: str) -> Path | None:
    """The annotation file of a split: data.train/data.val, else ROOT/<name>.json."""
    if annotations is not None:
        return Path(annotations)
    if root is None:
        return None
    candidate = Path(root) / f"{name}.json"
    return candidate if candidate.is_file() else None


def labels_and_more(inputs):
    """What SanitizeBoundingBoxes removes together with a dropped box: its label, area and crowd flag."""
    target = inputs[1]
    return target["labels"], target["area"], target["iscrowd"]


def transforms(augment: str, train: bool):
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    steps = []
    if train and augment in ("light", "strong"):
        steps += [v2.RandomPhotometricDistort(p=0.5),
                  v2.RandomApply([v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.75, 1.25))], p=0.5),
                  v2.RandomHorizontalFlip(0.5)]
    if train and augment == "strong":
        steps += [v2.RandomVerticalFlip(0.5), v2.RandomApply([v2.GaussianBlur(5)], p=0.2)]
    steps += [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]
    if train:
        steps.append(v2.SanitizeBoundingBoxes(min_size=1, labels_getter=labels_and_more))
    return v2.Compose(steps)


class CocoDetectionSet:
    """Item i: (float CHW image in [0, 1], {"boxes" (N, 4) xyxy, "labels", "area", "iscrowd",
    "image_id", and "masks" when ``masks``}). An image with no boxes is a negative: boxes of
    shape (0, 4)."""

    def __init__(self, coco: CocoSet, label_of: dict[int, int], *, masks: bool, augment: str = "none", train: bool = False,
                 copy_paste: float = 0.0) -> None:
        from .copypaste import CopyPaste

        self.coco = coco
        self.label_of = label_of
        self.masks = masks
        self.transform = transforms(augment, train)
        self.copy_paste = CopyPaste(coco, copy_paste) if train and copy_paste > 0 else None

    def __len__(self) -> int:
        return len(self.coco.images)

    @property
    def aspect_ratios(self) -> list[float]:
        return [image.width / image.height for image in self.coco.images]

    def __getitem__(self, index: int):
        import numpy as np
        import torch
        from torchvision import tv_tensors

        from ptcli.vision.imaging import open_image, to_rgb


        entry = self.coco.images[index]
        try:
            picture = to_rgb(open_image(entry.path))
        except InputError as exc:
            raise InputError(f"{self.coco.source}: image {entry.id}: {exc}") from None
        if picture.size != (entry.width, entry.height):
            raise UsageError(f"{self.coco.source}: image {entry.id} ({entry.path.name}) is {picture.width}x{picture.height}, "
                             f"not the {entry.width}x{entry.height} the annotations give")
        pasted = self.copy_paste(index, picture, entry.boxes) if self.copy_paste is not None else []
        image = tv_tensors.Image(torch.from_numpy(np.array(picture, dtype=np.uint8, copy=True)).permute(2, 0, 1))
        boxes = torch.tensor([*entry.boxes, *(p[0] for p in pasted)], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(entry.height, entry.width)),
            "labels": torch.tensor([self.label_of[c] for c in [*entry.category_ids, *(p[1] for p in pasted)]], dtype=torch.int64),
            "area": torch.tensor([*entry.areas, *(p[2] for p in pasted)], dtype=torch.float32),
            "iscrowd": torch.tensor([*entry.iscrowd, *(0 for _ in pasted)], dtype=torch.int64),
            "image_id": entry.id,
        }
        if self.masks:
            stacked = [segmentation_mask(s, entry.width, entry.height, b) for s, b in zip(entry.segmentations, entry.boxes)]
            stacked += [p[3] for p in pasted]
            target["masks"] = tv_tensors.Mask(torch.stack(stacked) if stacked else torch.zeros((0, entry.height, entry.width), dtype=torch.bool))
        image, target = self.transform(image, target)
        target["boxes"] = target["boxes"].as_subclass(torch.Tensor)
        if self.masks:
            target["masks"] = target["masks"].as_subclass(torch.Tensor).to(torch.uint8)
        return image.as_subclass(torch.Tensor), target


def collate(batch):
    """Detectors take lists: (images, targets)."""
    return tuple(zip(*batch))


def load_split(path: Path, images: Path | None) -> CocoSet:
    coco = read_coco(path, images)
    if not coco.images:
        raise UsageError(f"{path} lists no images")
    return coco
