"""Capabilities: what one recipe offers other plugins without either naming the other.

A recipe declares ``provides={"image-classifier": "pkg.module:loader"}``; a plugin that works
on any image classifier (attack, defend) asks for the capability, and gets the loader of the
recipe a checkpoint names, or of the one installed recipe that provides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

from ptcli.errors import UsageError
from ptcli.inference.contract import IMAGE, Predictor, sample_image_bytes

IMAGE_CLASSIFIER = "image-classifier"


class ImageClassifier(Protocol):
    """An image classifier as the adversarial tools drive it: on pixels in [0, 1]."""

    labels: list[str]
    source: str
    #: The bare network (its layers are where `ptcli explain` hooks in).
    net: Any

    def read(self, path: Path) -> Any:
        """An image file as an upright RGB PIL image (InputError if it cannot be read)."""

    def model_input(self, image) -> Any:
        """The pixels (3, h, w) the network sees, resized and cropped, before normalisation."""

    def network(self) -> Any:
        """A module from model_input pixels (B, 3, h, w) to logits (normalisation inside)."""

    def pipeline(self) -> Any:
        """A module from the original image's pixels (B, 3, H, W) to logits: resize, crop and
        normalisation inside, differentiable, as the command's own preprocessing does them."""

    def as_read(self) -> Any:
        """Optional. A module from the original image's pixels to logits exactly as
        predict_file reads the saved 8-bit file (not differentiable). Query-only attacks
        (Square) ask it when it exists, so that what they find survives being saved; without
        it they query pipeline()."""

    def input_region(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x, y, w, h): the part of a width x height image that model_input covers, in its pixels."""

    def predict_file(self, path: Path) -> tuple[int, float]:
        """(label index, probability) of a file through the command's own preprocessing."""

    def labelled(self, data: Path) -> list[tuple[Path, int]]:
        """(image, label index) pairs of a labelled data folder (the recipe's layout)."""


def providers(capability: str) -> list:
    from ptcli.plugins import get_plugins

    return [recipe for recipe in get_plugins().recipes.values() if capability in recipe.provides]


def load(capability: str, *, checkpoint: Path | None = None, **kwargs) -> Any:
    """The capability's object: from the recipe that wrote ``checkpoint`` (which must provide
    it), else from the first installed recipe that provides it (with ``model``, the first whose
    models include that name; an unknown name is then that recipe's own error)."""
    from ptcli.models.sidecars import read_sidecar
    from ptcli.refs import load_ref

    offering = providers(capability)
    if not offering:
        raise UsageError(f"no installed recipe provides {capability} (see `ptcli plugins`)")
    if checkpoint is not None:
        recipe_name = read_sidecar(checkpoint).get("recipe", "")
        chosen = [recipe for recipe in offering if recipe.name == recipe_name]
        if not chosen:
            raise UsageError(f"checkpoint {checkpoint} is a {recipe_name or 'unknown recipe'} checkpoint; this command needs "
                             f"{'an' if capability[0] in 'aeiou' else 'a'} {capability} "
                             f"({', '.join(recipe.name for recipe in offering)})")
        recipe = chosen[0]
    elif kwargs.get("model") is not None:  # the provider whose models include that name
        known = [recipe for recipe in offering if recipe.model_registry.find(kwargs["model"]) is not None]
        recipe = (known or offering)[0]
    else:
        recipe = offering[0]
    return load_ref(recipe.provides[capability])(checkpoint=checkpoint, **kwargs)


def check_classifier_source(checkpoint, model, weights, device: str) -> None:
    """The rules every source of another recipe's classifier follows (a well-formed --device, one
    of --checkpoint or --model/--weights); the provider's loader checks the rest."""
    from ptcli.devices import check_device_syntax
    from ptcli.models.loading import exclusive_sources

    check_device_syntax(device)
    exclusive_sources(checkpoint, model, weights)


def image_classifier(*, model: str | None, weights: Path | None, checkpoint: Path | None, device: str, devices) -> tuple[Any, Any]:
    """(classifier, torch device) for a command that drives any image classifier: the usual
    --model/--weights/--checkpoint rules, then the provider's loader, moved to the device."""
    from ptcli.devices import resolve_device

    check_classifier_source(checkpoint, model, weights, device)
    target = resolve_device(device, devices)
    classifier = load(IMAGE_CLASSIFIER, checkpoint=checkpoint, model=model, weights=weights)
    return classifier.to(target), target


def label_index(labels: list[str], name: str, option: str) -> int:
    """The index of class ``name`` (exact, else the one class equal to it ignoring case), or a usage
    error that lists the classes: all of them when they are few, else the closest and a sample."""
    if name in labels:
        return labels.index(name)
    folded = [i for i, label in enumerate(labels) if label.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    import difflib

    message = f"{option} {name!r} is not one of the model's {len(labels)} classes"
    if len(labels) <= 30:
        raise UsageError(f"{message}: {', '.join(labels)}")
    word, words = name.casefold(), [label.casefold() for label in labels]
    close = [labels[i] for i, label in enumerate(words) if word in label.split()]
    close = (close + [labels[i] for i, label in enumerate(words) if word in label and labels[i] not in close])[:5]
    close += [label for label in difflib.get_close_matches(name, labels, n=5, cutoff=0.5) if label not in close][: 5 - len(close)]
    hint = f"did you mean {', '.join(close)}?" if close else f"they begin {', '.join(labels[:5])}, ..."
    raise UsageError(f"{message}; {hint}")


class ImageClassifierPredictor(Predictor):
    """The base of a Predictor that drives any image classifier and answers with an image (the
    adversarial image, a heat map): it loads the capability's classifier from the source on the
    device, keeps images as a list, and serves the result's "png" as the file."""

    kind, collate, media_type, needs_gradients = IMAGE, "list", "image/png", True
    default_batch_size = 1  # one image a forward: each differentiates on its own
    #: What the predictor does, for its title: "explain", "attack".
    verb: ClassVar[str] = ""

    def __init__(self, classifier, device, *, title: str = "") -> None:
        self.classifier, self.device, self.title = classifier, device, title

    @classmethod
    def check_source(cls, recipe, source, device: str) -> None:
        """The classifier is another recipe's (a classify-image checkpoint)."""
        check_classifier_source(source.checkpoint, source.model, source.weights, device)

    @classmethod
    def load(cls, source, device, **options):
        classifier = load(IMAGE_CLASSIFIER, checkpoint=source.checkpoint, model=source.model, weights=source.weights)
        return cls(classifier.to(device), device, title=f"{cls.verb} ({classifier.source})", **options)

    def preprocess(self, items: list) -> list:
        return list(items)

    def encode(self, result: dict) -> bytes:
        return result["png"]

    def warmup(self):
        return sample_image_bytes()
