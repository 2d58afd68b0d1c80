"""mAP as COCO computes it: torchmetrics' MeanAveragePrecision on the faster_coco_eval backend
(pycocotools' maintained, faster twin), boxes and, for mask models, masks too."""

from __future__ import annotations

from torchmetrics.detection import MeanAveragePrecision


class DetectionMAP(MeanAveragePrecision):
    """COCO mAP with readable keys: map (box mAP@[.5:.95]), map_50, map_75, ap/<class> (box AP
    of each class that has ground truth), and mask_map, mask_map_50, mask_map_75 with masks."""

    def __init__(self, class_names: list[str], masks: bool = False) -> None:
        super().__init__(iou_type=("bbox", "segm") if masks else "bbox", class_metrics=True,
                         backend="faster_coco_eval")
        self.class_names = list(class_names)  # label i + 1 is class_names[i]
        self.with_masks = masks

    def compute(self) -> dict:
        import torch

        raw = super().compute()
        box = "bbox_" if self.with_masks else ""
        result = {"map": raw[f"{box}map"], "map_50": raw[f"{box}map_50"], "map_75": raw[f"{box}map_75"]}
        if self.with_masks:
            result.update(mask_map=raw["segm_map"], mask_map_50=raw["segm_map_50"], mask_map_75=raw["segm_map_75"])
        classes = raw["classes"].flatten().tolist()
        per_class = raw[f"{box}map_per_class"].flatten().tolist()
        for label, ap in zip(classes, per_class):
            if ap >= 0 and 1 <= label <= len(self.class_names):  # -1: no ground truth of that class
                result[f"ap/{self.class_names[label - 1]}"] = torch.tensor(ap)
        return result


def metric_inputs(prediction: dict, target: dict, masks: bool) -> tuple[dict, dict]:
    """A detector's output and the ground truth as MeanAveragePrecision takes them (soft
    masks thresholded at 0.5; crowd flags and areas passed on, as COCO scores them)."""
    pred = {"boxes": prediction["boxes"], "scores": prediction["scores"], "labels": prediction["labels"]}
    truth = {"boxes": target["boxes"], "labels": target["labels"], "iscrowd": target["iscrowd"], "area": target["area"]}
    if masks:
        pred["masks"], truth["masks"] = prediction["masks"][:, 0] > 0.5, target["masks"].bool()
    return pred, truth
