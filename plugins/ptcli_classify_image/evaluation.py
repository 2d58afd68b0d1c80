"""The labelled images `ptcli eval` scores a classify-image model on (ImageClassifier.evaluate)."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError


def labelled_images(data: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(image, index in the checkpoint's classes) from DATA/<class>/ or, given a data root,
    from its val/ folder."""
    from .imagefolder import read_split

    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    folder = data / "val" if (data / "val").is_dir() else data
    found = read_split(folder, "evaluation")
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise UsageError(f"{folder / unknown[0]} is not one of the checkpoint's classes ({', '.join(classes)})")
    index = {name: i for i, name in enumerate(classes)}
    return [(path, index[name]) for name, files in found.items() for path in files]
