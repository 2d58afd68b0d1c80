"""mAP as COCO computes it: torchmetrics' MeanAveragePrecision on the faster_coco_eval backend
(pycocotools' maintained, faster twin), boxes and, for mask models, masks too."""

from __future__ import annotations

from torchmetrics.detection import MeanAveragePrecision


class DetectionMAP(MeanAveragePrecision):
    """COCO mAP with readable keys: map (box mAP@[.5:.95]), map_50, map_75, ap/<class> (box AP
    of each class that has ground truth), and mask_map, mask_map_50, mask_map_75 with masks."""

    def __init__(self, class_names: list[str], masks: bool = False, curves: bool = False) -> None:
        super().__init__(iou_type=("bbox", "segm") if masks else "bbox", class_metrics=True,
                         backend="faster_coco_eval", extended_summary=curves)
        self.class_names = list(class_names)  # label i + 1 is class_names[i]
        self.with_masks = masks
        self.curves = curves

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
        if self.curves:
            result["pr_curve"] = self._pr_curve(raw[f"{box}precision"], classes)
        return result

    def _pr_curve(self, precision, classes: list[int]) -> dict:
        """Box precision at COCO's 101 recall points, at IoU 0.5, for every size of object and
        up to 100 detections per image, per class that has ground truth (extended_summary's
        precision is [IoU, recall, class, area, max detections]; -1 where undefined)."""
        curve = {}
        for index, label in enumerate(classes):
            values = precision[0, :, index, 0, -1].tolist()
            if 1 <= label <= len(self.class_names) and any(v >= 0 for v in values):
                curve[self.class_names[label - 1]] = [round(max(v, 0.0), 4) for v in values]
        return {"iou": 0.5, "recall": [round(i / 100, 2) for i in range(101)], "precision": curve}


def metric_inputs(prediction: dict, target: dict, masks: bool) -> tuple[dict, dict]:
    """A detector's output and the ground truth as MeanAveragePrecision takes them (soft
    masks thresholded at 0.5; crowd flags and areas passed on, as COCO scores them)."""
    pred = {"boxes": prediction["boxes"], "scores": prediction["scores"], "labels": prediction["labels"]}
    truth = {"boxes": target["boxes"], "labels": target["labels"], "iscrowd": target["iscrowd"], "area": target["area"]}
    if masks:
        pred["masks"], truth["masks"] = prediction["masks"][:, 0] > 0.5, target["masks"].bool()
    return pred, truth
