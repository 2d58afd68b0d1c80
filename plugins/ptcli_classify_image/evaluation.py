"""`ptcli eval` for classify-image checkpoints: score a model on an ImageFolder."""

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


def evaluate_checkpoint(checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
    from ptcli.training.classification import evaluate_files

    from . import RECIPE
    from .models import load_classifier
    from .data import LoadImage, Preprocess

    net, classes, preprocessing = load_classifier(None, None, checkpoint)
    return evaluate_files(labelled_images(data, classes), classes, net=net.to(device).eval(),
                          load=LoadImage(RECIPE.data_adapter, Preprocess(preprocessing)), device=device,
                          batch_size=batch_size, data=data, checkpoint=checkpoint)
