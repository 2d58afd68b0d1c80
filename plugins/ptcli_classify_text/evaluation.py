"""`ptcli eval` for classify-text checkpoints: score a model on a labelled file."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError

_SPLIT_NAMES = ("test", "val")
_SUFFIXES = (".csv", ".tsv", ".jsonl")


def labelled_file(data: Path) -> Path:
    """DATA itself, or in a folder its test file (else its val file)."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise UsageError(f"data not found: {data}")
    for name in _SPLIT_NAMES:
        for suffix in _SUFFIXES:
            if (data / f"{name}{suffix}").is_file():
                return data / f"{name}{suffix}"
    raise UsageError(f"no test or val file (.csv, .tsv, .jsonl) in {data}; name the file itself")


def evaluate_checkpoint(checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
    import torch

    from ptcli.inference.results import Failed
    from ptcli.models.sidecars import read_sidecar
    from ptcli.output import warn
    from ptcli.training.classification import classification_report

    from .inference import classify_batched
    from .models import load_checkpoint_classifier
    from .textfiles import read_labelled

    layout = read_sidecar(checkpoint).get("data") or {}
    path = labelled_file(data)
    texts, labels, empty = read_labelled(path, fmt=layout.get("format", "auto"), text_column=layout.get("text_column", "text"),
                                         label_column=layout.get("label_column", "label"),
                                         encoding=layout.get("encoding", "utf-8"))
    classifier = load_checkpoint_classifier(checkpoint)
    known = {name: i for i, name in enumerate(classifier.labels)}
    unknown = sorted(set(labels) - set(known))
    if unknown:
        raise UsageError(f"{path} has labels the checkpoint does not know: {', '.join(map(repr, unknown[:5]))}; "
                         f"it knows {', '.join(classifier.labels)}")
    classifier.model.to(device).eval()
    results, encode = classify_batched(classifier, texts, device=device, batch_size=batch_size, description="evaluating")
    logits = [result for _, result in results if not isinstance(result, Failed)]
    if encode.truncated:
        warn(f"{encode.truncated} of {len(texts)} texts were cut to {classifier.encoder.max_length} tokens")
    report = {"checkpoint": str(checkpoint), "data": str(path)}
    report.update(classification_report(torch.stack(logits), torch.tensor([known[label] for label in labels]),
                                        classifier.labels))
    report["failed"] = empty
    return report
