"""How classify-image exports: the network on normalised crops (B, 3, crop, crop) to logits.
Reading, resizing and cropping stay in ptcli (Pillow), as for the eager model, so an export
and the eager model see the same pixels."""

from __future__ import annotations


def exportable(*, checkpoint, model, weights, samples):
    import torch

    from ptcli.exporting.spec import Exportable, predictor_inputs, sample_image, sidecar, variants
    from ptcli.inference.contract import Source

    from . import RECIPE
    from .models import DEFAULT_MODEL
    from .predictor import ImageClassifier

    classifier = ImageClassifier.load(Source(checkpoint, model, weights), torch.device("cpu"))
    # The bare network in its plain layout; the inputs are the command's own (its decode and preprocess).
    net, labels, preprocessing = classifier.net.to(memory_format=torch.contiguous_format), classifier.labels, classifier.pre.spec
    images = predictor_inputs(classifier, samples or [sample_image()])

    def vary(pixels, k):  # flipped, then shifted: other inputs with the same content
        pixels = pixels.flip(-1) if k % 2 else pixels
        return pixels.roll(8 * (k // 2), dims=-1)

    def sample(n: int):
        return (torch.stack(variants(images, n, vary)),)

    meta = sidecar(RECIPE.name, checkpoint, model=model or DEFAULT_MODEL, classes=labels, preprocessing=preprocessing)
    return Exportable(module=net, input_names=("pixels",), output_names=("logits",), sample=sample, meta=meta,
                      dynamic={})
