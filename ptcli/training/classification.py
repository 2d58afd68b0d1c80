"""What every classification recipe shares: the loss with label smoothing and mixup (book
ch. 9), the validation metrics, and the evaluation report of `ptcli eval`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ClassificationLoss:
    """Cross-entropy with optional label smoothing; ``mix`` applies mixup to a training batch."""

    def __init__(self, label_smoothing: float = 0.0, mixup_alpha: float = 0.0) -> None:
        import torch

        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.mixup_alpha = mixup_alpha

    def mix(self, inputs, targets):
        """(mixed inputs, targets, shuffled targets, lambda); lambda 1.0 when mixup is off."""
        import torch

        if self.mixup_alpha <= 0:
            return inputs, targets, targets, 1.0
        lam = float(torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample())
        order = torch.randperm(inputs.shape[0], device=inputs.device)
        return lam * inputs + (1 - lam) * inputs[order], targets, targets[order], lam

    def __call__(self, logits, targets, shuffled=None, lam: float = 1.0):
        loss = self.criterion(logits, targets)
        if shuffled is not None and lam < 1.0:
            loss = lam * loss + (1 - lam) * self.criterion(logits, shuffled)
        return loss


def classification_metrics(num_classes: int):
    """Validation metrics: accuracy, and top-5 accuracy when there are more than 5 classes."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy

    metrics = {"accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro")}
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes=num_classes, average="micro", top_k=5)
    return MetricCollection(metrics)


def classification_report(logits, targets, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, top-5, per-class precision and recall, and the confusion matrix (rows: true
    class, columns: predicted)."""
    import torch
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_precision,
        multiclass_recall,
    )

    n = len(classes)
    logits, targets = logits.float(), targets.long()
    report: dict[str, Any] = {"samples": int(targets.numel())}
    report["accuracy"] = round(float(multiclass_accuracy(logits, targets, n, average="micro")), 6)
    if n > 5:  # with 5 classes or fewer, top-5 accuracy is 1 by definition
        report["top5"] = round(float(multiclass_accuracy(logits, targets, n, average="micro", top_k=5)), 6)
    precision = multiclass_precision(logits, targets, n, average=None, zero_division=0)
    recall = multiclass_recall(logits, targets, n, average=None, zero_division=0)
    support = torch.bincount(targets, minlength=n)
    report["per_class"] = [
        {"class": name, "precision": round(float(p), 6), "recall": round(float(r), 6), "support": int(s)}
        for name, p, r, s in zip(classes, precision, recall, support)
    ]
    report["classes"] = list(classes)
    report["confusion_matrix"] = multiclass_confusion_matrix(logits, targets, n).tolist()
    return report


def format_classification_report(report: Mapping[str, Any]) -> str:
    lines = [f"samples   {report['samples']}", f"accuracy  {report['accuracy']:.4f}"]
    if "top5" in report:
        lines.append(f"top-5     {report['top5']:.4f}")
    if report.get("failed"):
        lines.append(f"unreadable inputs skipped: {report['failed']}")
    width = max(len("class"), *(len(c) for c in report["classes"]))
    lines += ["", f"{'class':<{width}}  precision  recall  support"]
    for row in report["per_class"]:
        lines.append(f"{row['class']:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['support']:7d}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    cell = max(5, max(len(str(v)) for row in report["confusion_matrix"] for v in row) + 1)
    labels = [str(i) for i in range(len(report["classes"]))]
    lines.append(" " * (width + 2) + "".join(f"{label:>{cell}}" for label in labels))
    for i, (name, row) in enumerate(zip(report["classes"], report["confusion_matrix"])):
        lines.append(f"{name:<{width}}  " + "".join(f"{v:>{cell}}" for v in row) + f"   ({i})")
    return "\n".join(lines)


class ClassifierSteps:
    """The steps and the eval report every one-model classifier shares, as a mixin before
    TrainingTask: batches are (inputs, targets); the task sets ``self.loss`` (a
    ClassificationLoss) and ``self.classes`` in setup, and overrides ``logits`` when its model
    is not called as ``model(inputs)``."""

    def logits(self, model, inputs):
        return model(inputs)

    def metrics(self):
        return classification_metrics(len(self.classes))

    def training_step(self, batch, ctx):
        inputs, targets = batch
        inputs, targets_a, targets_b, lam = self.loss.mix(inputs, targets)
        loss = self.loss(self.logits(ctx.model, inputs), targets_a, targets_b, lam)
        ctx.optimize(loss)
        return {"loss": loss.detach()}

    def validation_step(self, batch, ctx):
        inputs, targets = batch
        logits = self.logits(ctx.model, inputs).float()
        ctx.update_metrics(logits, targets)
        return {"loss": self.loss.criterion(logits, targets)}

    @classmethod
    def format_evaluation(cls, report) -> str:
        return format_classification_report(report)


def evaluate_files(samples: Sequence[tuple[Any, int]], classes: Sequence[str], *, net, load, device, batch_size: int,
                   data: Any, checkpoint: Any) -> dict[str, Any]:
    """``ptcli eval`` for a classifier of files: run ``net`` over (file, class index) samples
    in batches, report unreadable files one line each (and count them), and return the
    classification report."""
    import torch

    from ptcli.batching import run_batched_with_progress
    from ptcli.results import Failed
    from ptcli.errors import UsageError
    from ptcli.output import error_line

    labels = dict(samples)
    logits, targets, failed = [], [], 0
    results = run_batched_with_progress("evaluating", [path for path, _ in samples], load=load,
                                        forward=lambda batch: net(batch).float().cpu(), postprocess=lambda row: row,
                                        device=device, batch_size=batch_size, distributed=False)
    for path, result in results:
        if isinstance(result, Failed):
            failed += 1
            error_line(f"{path}: {result.message}")
            continue
        logits.append(result)
        targets.append(labels[path])
    if not logits:
        raise UsageError(f"no readable inputs in {data}")
    report = {"checkpoint": str(checkpoint), "data": str(data)}
    report.update(classification_report(torch.stack(logits), torch.tensor(targets), classes))
    report["failed"] = failed
    return report
