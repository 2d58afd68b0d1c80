"""Labelled audio: the ESC-50 layout (audio/*.wav and meta/esc50.csv with its real columns,
fold-based splits, the esc10 subset) or one folder per class."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ptcli.errors import UsageError

from .audio import EXTENSIONS

ESC50_COLUMNS = {"filename", "fold", "target", "category", "esc10"}


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    fold: int | None = None


def is_esc50(root: Path) -> bool:
    return (Path(root) / "meta" / "esc50.csv").is_file()


def read_esc50(root: Path, esc10: bool = False) -> tuple[list[Clip], list[str]]:
    """(clips, class names in target order) from meta/esc50.csv; categories come from the CSV."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    with open(meta, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = ESC50_COLUMNS - set(reader.fieldnames or [])
        if missing:
            raise UsageError(f"{meta} lacks the ESC-50 columns {', '.join(sorted(missing))}")
        rows = list(reader)
    if esc10:
        rows = [r for r in rows if r["esc10"].strip().lower() == "true"]
    if not rows:
        raise UsageError(f"{meta} lists no clips{' in the esc10 subset' if esc10 else ''}")
    names = {int(r["target"]): r["category"] for r in rows}
    classes = [names[t] for t in sorted(names)]
    clips = [Clip(root / "audio" / r["filename"], r["category"], int(r["fold"])) for r in rows]
    absent = [c.path.name for c in clips if not c.path.is_file()]
    if absent:
        raise UsageError(f"{len(absent)} clips listed in {meta} are not in {root / 'audio'} (e.g. {absent[0]})")
    return clips, classes


def split_folds(clips: list[Clip], val_folds: list[int], test_folds: list[int]) -> tuple[list[Clip], list[Clip], list[Clip]]:
    folds = sorted({c.fold for c in clips})
    unknown = [f for f in (*val_folds, *test_folds) if f not in folds]
    if unknown:
        raise UsageError(f"fold {unknown[0]} is not in the data (folds: {', '.join(map(str, folds))})")
    if set(val_folds) & set(test_folds):
        raise UsageError("data.val_folds and data.test_folds must not share a fold")
    train = [c for c in clips if c.fold not in val_folds and c.fold not in test_folds]
    if not train:
        raise UsageError("no folds are left for training")
    return train, [c for c in clips if c.fold in val_folds], [c for c in clips if c.fold in test_folds]


def read_class_folders(folder: Path) -> list[Clip]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"audio folder not found: {folder}")
    clips = [Clip(p, d.name) for d in sorted(folder.iterdir()) if d.is_dir()
             for p in sorted(d.rglob("*")) if p.suffix.lower() in EXTENSIONS]
    if not clips:
        raise UsageError(f"no .wav/.flac/.ogg files in class folders under {folder}")
    return clips
