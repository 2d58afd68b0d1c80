"""`ptcli eval` on the inference contract: a recipe's Predictor scores itself on labelled data
(``Predictor.evaluate``), so a recipe without training evaluates too, through the same decode,
preprocess and forward as its command. For classifiers: their output rows over labelled
inputs, and the classification report."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .contract import Predictor


def output_rows(predictor: Predictor, inputs: Sequence[Any], *, batch_size: int, workers: int | None = None,
                description: str = "evaluating") -> Iterator[tuple[Any, Any]]:
    """(input, its forward row or Failed) for every input, in order: the command's loop without
    postprocess, in this process alone (a score is computed where every row is); at the
    predictor's precision, a chunked one's pieces batched and merged, as the command runs it."""
    from .batching import run_batched_with_progress
    from .runner import _Decode, _Preprocess
    from .steps import forward_step

    forward, batch_size = forward_step(predictor, batch_size)
    return run_batched_with_progress(description, inputs, load=_Decode(predictor), forward=forward,
                                     postprocess=lambda row, meta: row, device=predictor.device, batch_size=batch_size,
                                     workers=workers, collate=_Preprocess(predictor), distributed=False,
                                     gradients=predictor.needs_gradients)


def score_classifier(predictor: Predictor, samples: Sequence[tuple[Any, int]], classes: Sequence[str], *,
                     batch_size: int, data: Any, checkpoint: Any) -> dict[str, Any]:
    """The classification report of a predictor whose forward rows are class scores, over
    (input, class index) samples; unreadable inputs are reported one line each, and counted."""
    import torch

    from ptcli.errors import UsageError
    from ptcli.output import error_line

    from .results import Failed

    labels = dict(samples)
    rows, targets, failed = [], [], 0
    for item, row in output_rows(predictor, [item for item, _ in samples], batch_size=batch_size):
        if isinstance(row, Failed):
            failed += 1
            error_line(f"{item}: {row.message}")
            continue
        rows.append(row)
        targets.append(labels[item])
    if not rows:
        raise UsageError(f"no readable inputs in {data}")
    report = {"checkpoint": str(checkpoint), "data": str(data)}
    report.update(classification_report(torch.stack(rows), torch.tensor(targets), classes))
    report["failed"] = failed
    return report


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
