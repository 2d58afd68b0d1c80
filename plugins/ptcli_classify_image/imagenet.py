"""The ImageNet-1k class names, for the models classify-image loads with published ImageNet
weights."""

from __future__ import annotations


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in output order (torchvision's list, stored as a file
    so that reading it imports neither torchvision nor torch)."""
    from importlib.resources import files

    return (files("ptcli_classify_image") / "imagenet_categories.txt").read_text(encoding="utf-8").splitlines()
