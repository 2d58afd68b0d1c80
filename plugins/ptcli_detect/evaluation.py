"""`ptcli eval` for detect checkpoints: COCO mAP on a folder with images/ and val.json (else
annotations.json), or on a COCO file (its images/ beside it). Figures do not depend on the batch
size: only images of one size share a forward pass."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ptcli.errors import UsageError


def annotation_file(data: Path) -> Path:
    data = Path(data)
    if data.is_file():
        return data
    if data.is_dir():
        # val.json first: a folder laid out for training holds its held-out split there, and
        # annotations.json (every image, the training ones too) would flatter the model.
        for name in ("val.json", "annotations.json"):
            if (data / name).is_file():
                return data / name
        raise UsageError(f"{data} has neither val.json nor annotations.json; give a folder with images/ and one of them, or a COCO file")
    raise UsageError(f"data not found: {data}")


def evaluate_checkpoint(checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
    from .models import load_detector

    loaded = load_detector(None, None, checkpoint)
    return evaluate_detector(loaded.model, loaded.categories, data, device=device, batch_size=batch_size,
                             checkpoint=checkpoint)


def evaluate_detector(model, categories, data: Path, *, device, batch_size: int, checkpoint) -> dict:
    """COCO mAP of ``model`` (its classes ``categories``) on ``data``, as loaded: the scores its
    builder keeps (torchvision's 0.05), not a command's --threshold."""
    import torch

    from ptcli.inference.batching import as_list, run_batched_with_progress

    from .coco import read_coco
    from .cocodata import CocoDetectionSet
    from .metrics import DetectionMAP, metric_inputs
    from .models import detect_by_size, has_masks

    source = annotation_file(data)
    coco = read_coco(source)
    names = categories.names[1:]
    label_of = {cid: label for label, cid in enumerate(categories.ids) if label > 0}
    unknown = [name for cid, name in coco.categories if cid not in label_of or categories.names[label_of[cid]] != name]
    if unknown:
        raise UsageError(f"{source}: category {unknown[0]!r} is not one of the checkpoint's "
                         f"({', '.join(f'{i} {n}' for i, n in zip(categories.ids[1:], names))})")
    masks = has_masks(model)
    dataset = CocoDetectionSet(coco, label_of, masks=masks)
    net = model.to(device).eval()
    metric = DetectionMAP(names, masks=masks, curves=True)
    shown = []  # the first images' boxes, for the grid of `eval --plots` and of a training run

    def forward(batch):
        return [{k: v.cpu() for k, v in out.items()} for out in detect_by_size(net, batch)]

    failed = 0
    for index, result in run_batched_with_progress("evaluating", list(range(len(dataset))), load=LoadTarget(dataset), forward=forward,
                                                     postprocess=lambda out, target: (out, target), device=device,
                                                     batch_size=batch_size, collate=as_list):
        if not isinstance(result, tuple):
            failed += 1
            continue
        pred, truth = metric_inputs(*result, masks)
        metric.update([pred], [truth])
        if len(shown) < GRID_IMAGES:
            shown.append(_shown(dataset.coco.images[index].path, pred, truth, categories.names))
    with torch.no_grad():
        computed = metric.compute()
        curve = computed.pop("pr_curve")
        scores = {key: float(value) for key, value in computed.items()}
    report = {"checkpoint": str(checkpoint), "data": str(source), "images": len(dataset) - failed,
              "map": round(scores["map"], 4), "map_50": round(scores["map_50"], 4), "map_75": round(scores["map_75"], 4),
              "per_class": {key.removeprefix("ap/"): round(value, 4) for key, value in scores.items() if key.startswith("ap/")}}
    for key in ("mask_map", "mask_map_50", "mask_map_75"):
        if key in scores:
            report[key] = round(scores[key], 4)
    report["failed"] = failed
    report["_pictures"] = {"pr_curve": curve, "predictions": {"score_floor": SHOWN_SCORE, "images": shown}}
    return report


#: How many validation images the grid shows, and the score a shown prediction reaches.
GRID_IMAGES, SHOWN_SCORE = 8, 0.5


def _shown(path, pred: dict, truth: dict, names: list[str]) -> dict:
    """One image of the grid: its file, its true boxes and its confident predicted ones (xyxy)."""
    keep = pred["scores"] >= SHOWN_SCORE
    return {"file": str(path),
            "truth": [{"label": names[int(label)], "box": [round(float(v), 1) for v in box]}
                      for box, label in zip(truth["boxes"], truth["labels"])],
            "predicted": [{"label": names[int(label)], "score": round(float(score), 3), "box": [round(float(v), 1) for v in box]}
                          for box, label, score in zip(pred["boxes"][keep], pred["labels"][keep], pred["scores"][keep])]}


class LoadTarget:
    """Item i of the data set as a Sample: the image, with its ground truth as metadata (a
    class, so that it pickles for DataLoader workers under any start method)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __call__(self, index: int):
        from ptcli.inference.batching import Sample

        image, target = self.dataset[index]
        return Sample(image, target)


def format_report(report: Mapping) -> str:
    lines = [f"{report['images']} images of {report['data']}",
             f"mAP       {report['map']:.4f}", f"mAP@.5    {report['map_50']:.4f}", f"mAP@.75   {report['map_75']:.4f}"]
    if "mask_map" in report:
        lines.append(f"mask mAP  {report['mask_map']:.4f}")
    if report.get("per_class"):
        width = max(len(name) for name in report["per_class"])
        lines.append("AP per class:")
        lines += [f"  {name:<{width}}  {ap:.4f}" for name, ap in report["per_class"].items()]
    if report.get("failed"):
        lines.append(f"{report['failed']} images could not be read")
    return "\n".join(lines)
