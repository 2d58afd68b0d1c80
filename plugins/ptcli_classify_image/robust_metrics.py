"""Validation metrics of adversarial training: clean accuracy (and top-5) beside the accuracy
on adversarial versions of the same images."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class CleanAndRobustAccuracy(Metric):
    """update(clean logits, adversarial logits, targets); compute: accuracy, robust_accuracy
    and, with more than 5 classes, top5."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        for name in ("correct", "robust", "top5", "total"):
            self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits, adversarial, targets) -> None:
        self.correct += (logits.argmax(1) == targets).sum()
        self.robust += (adversarial.argmax(1) == targets).sum()
        if self.num_classes > 5:
            self.top5 += (logits.topk(5, dim=1).indices == targets[:, None]).any(dim=1).sum()
        self.total += targets.numel()

    def compute(self) -> dict:
        total = self.total.clamp(min=1).float()
        result = {"accuracy": self.correct.float() / total, "robust_accuracy": self.robust.float() / total}
        if self.num_classes > 5:
            result["top5"] = self.top5.float() / total
        return result
