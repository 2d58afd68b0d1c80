"""How classify-image serves: an uploaded image through the command's own preprocessing; each
result is the command's --json object (predictions: label, index, score)."""

from __future__ import annotations

TOP_K = 5


def servable(*, checkpoint, model, weights, device):
    import torch

    from ptcli.serving.spec import IMAGE, Servable, image_from_bytes, sample_image

    from .data import Preprocess
    from .models import DEFAULT_MODEL, load_classifier

    net, labels, preprocessing = load_classifier(model, weights, checkpoint)
    net = net.to(device).eval()
    preprocess = Preprocess(preprocessing)
    k = min(TOP_K, len(labels))

    def decode(data: bytes):
        return preprocess(image_from_bytes(data))

    def predict(batch: list) -> list[dict]:
        with torch.inference_mode():
            probabilities = net(torch.stack(batch).to(device)).float().softmax(dim=-1).cpu()
        scores, indices = probabilities.topk(k)
        return [{"predictions": [{"label": labels[i], "index": i, "score": round(s, 6)} for s, i in zip(row_s, row_i)]}
                for row_s, row_i in zip(scores.tolist(), indices.tolist())]

    title = f"classify-image ({checkpoint or model or DEFAULT_MODEL})"
    return Servable(kind=IMAGE, decode=decode, predict=predict, title=title, warmup=decode(sample_image()))
