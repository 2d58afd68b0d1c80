"""One image file attacked in its own pixels and saved losslessly, then checked the way
`ptcli classify-image` reads it."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import InputError


def attack_file(classifier, path: Path, settings, target_index: int | None, output: Path, overwrite: bool, device,
                on_step=None) -> dict:
    import torch

    from ptcli.imaging import save_png, to_pixels

    destination = output / f"{path.stem}_adv.png"
    if destination.exists() and not overwrite:
        raise InputError(f"{destination} exists; pass --overwrite to replace it")
    original = to_pixels(classifier.read(path))
    clean_index, clean_score = classifier.predict_file(path)
    targeted = target_index is not None
    label = torch.tensor([target_index if targeted else clean_index], device=device)
    x = original[None].to(device)
    adversarial = settings.run(classifier.pipeline(), x, label, targeted=targeted, quantize=True, on_step=on_step)[0]
    save_png(adversarial, destination)
    saved = to_pixels(classifier.read(destination))  # what the file holds, measured there
    delta = (saved - original).flatten()
    index, score = classifier.predict_file(destination)
    success = index == target_index if targeted else index != clean_index
    return {"output": str(destination),
            "clean": {"label": classifier.labels[clean_index], "score": round(clean_score, 6)},
            "adversarial": {"label": classifier.labels[index], "score": round(score, 6)},
            "success": bool(success), "linf": round(float(delta.abs().max()), 6), "l2": round(float(delta.norm()), 6)}
