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


def evaluate_checkpoint(checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
    from ptcli.checkpoints import read_sidecar
    from ptcli.training.classification import evaluate_files

    from .audio import LoadClip
    from .models import load_audio_classifier

    net, classes, clip = load_audio_classifier(checkpoint, None)
    clips = labelled_clips(data, read_sidecar(checkpoint))
    unknown = sorted({c.label for c in clips} - set(classes))
    if unknown:
        raise UsageError(f"{data} has classes the checkpoint does not know: {', '.join(unknown)}; it knows {', '.join(classes)}")
    return evaluate_files([(c.path, classes.index(c.label)) for c in clips], classes, net=net.to(device).eval(),
                          load=LoadClip(clip), device=device, batch_size=batch_size, data=data, checkpoint=checkpoint)
