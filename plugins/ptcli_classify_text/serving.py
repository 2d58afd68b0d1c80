"""How classify-text serves: texts from JSON ({"text": ...} or a list) or text/plain; each
result is the command's --json object (text, predictions: label, score)."""

from __future__ import annotations

TOP_K = 2


def servable(*, checkpoint, model, weights, device):
    import torch

    from ptcli.errors import UsageError
    from ptcli.results import top_predictions
    from ptcli.serving.spec import TEXT, Servable

    from .inference import check_text
    from .models import DEFAULT_MODEL, load_text_classifier

    if weights is not None:
        raise UsageError("classify-text takes no --weights; serve a checkpoint, or --model NAME|FOLDER")
    classifier = load_text_classifier(model, checkpoint)
    classifier.model.to(device).eval()
    labels = classifier.labels
    k = min(TOP_K, len(labels))

    def predict(texts: list[str]) -> list[dict]:
        batch, _ = classifier.encoder(texts)
        with torch.inference_mode():
            probabilities = classifier.logits({key: value.to(device) for key, value in batch.items()}).float().softmax(-1).cpu()
        return [{"text": text, "predictions": top_predictions(row, labels, k, with_index=False)}
                for text, row in zip(texts, probabilities)]

    title = f"classify-text ({checkpoint or model or DEFAULT_MODEL})"
    return Servable(kind=TEXT, decode=check_text, predict=predict, title=title, warmup="warm-up")
