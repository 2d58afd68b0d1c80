"""How classify-image serves: an uploaded image through the command's own preprocessing; each
result is the command's --json object (predictions: label, index, score)."""

from __future__ import annotations

TOP_K = 5


def servable(*, checkpoint, model, weights, device):
    import torch

    from ptcli.results import top_predictions
    from ptcli.serving.spec import IMAGE, Servable, image_from_bytes, sample_image

    from .data import Preprocess
    from .models import DEFAULT_MODEL, load_classifier

    net, labels, preprocessing = load_classifier(model, weights, checkpoint)
    # channels_last: EfficientNet-Lite0 runs 1.4x faster so on 2 CPU cores (10.3 against 14.6 ms
    # a forward at batch 1), and batches pay off (7.8 ms an image at 8) where they do not otherwise.
    net = net.to(device).eval().to(memory_format=torch.channels_last)
    preprocess = Preprocess(preprocessing)
    k = min(TOP_K, len(labels))

    def decode(data: bytes):  # resized and cropped by Pillow; the tensors are made in predict
        return preprocess.cropped(preprocess.resized(image_from_bytes(data)))

    def predict(batch: list) -> list[dict]:
        with torch.inference_mode():
            pixels = torch.stack([preprocess.of_crop(crop) for crop in batch]).to(device)
            probabilities = net(pixels.contiguous(memory_format=torch.channels_last)).float().softmax(dim=-1).cpu()
        return [{"predictions": top_predictions(row, labels, k)} for row in probabilities]

    title = f"classify-image ({checkpoint or model or DEFAULT_MODEL})"
    return Servable(kind=IMAGE, decode=decode, predict=predict, title=title, warmup=decode(sample_image()))
