"""`ptcli eval` for classify-audio checkpoints: accuracy, per-class precision and recall and the
confusion matrix on the test folds of an ESC-50 folder (those the checkpoint was trained to
hold out), or on class folders."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError


def labelled_clips(data: Path, meta: dict):
    from .datasets import is_esc50, read_class_folders, read_esc50

    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    layout = meta.get("data") or {}
    if is_esc50(data):
        clips, _ = read_esc50(data, bool(layout.get("esc10")))
        folds = layout.get("test_folds") or [5]
        chosen = [c for c in clips if c.fold in folds]
        if not chosen:
            raise UsageError(f"no clips in the test folds {folds} of {data}")
        return chosen
    return read_class_folders(data / "val" if (data / "val").is_dir() else data)
