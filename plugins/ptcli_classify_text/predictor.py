"""classify-text's inference contract: texts tokenised a batch at a time (counting those cut
to the model's limit), through the classifier; each result is the text and its top-k
predictions. The command and `ptcli serve` both run this."""

from __future__ import annotations

from ptcli.inference.contract import TEXT, Predictor, Sample, Source


class TextClassifierPredictor(Predictor):
    kind = TEXT

    def __init__(self, classifier, device, *, top_k: int = 2, title: str = "") -> None:
        from .inference import EncodeBatch

        classifier.model.to(device).eval()
        self.classifier, self.device, self.title = classifier, device, title
        self.labels = classifier.labels
        self.k = min(top_k, len(self.labels))
        #: Tokenises a batch; its ``truncated`` counts the texts cut so far.
        self.encode = EncodeBatch(classifier.encoder)

    @classmethod
    def load(cls, source: Source, device, *, top_k: int = 2, max_length: int | None = None) -> TextClassifierPredictor:
        from ptcli.errors import UsageError

        from .models import DEFAULT_MODEL, load_text_classifier

        if source.weights is not None:
            raise UsageError("classify-text takes no --weights; give a checkpoint, or --model NAME|FOLDER")
        classifier = load_text_classifier(source.model, source.checkpoint, max_length=max_length)
        return cls(classifier, device, top_k=top_k, title=f"classify-text ({source.describe(DEFAULT_MODEL)})")

    def decode(self, item: str) -> Sample:
        from .inference import check_text

        return Sample(check_text(item), item)

    def preprocess(self, texts: list[str]):
        return self.encode(texts)

    def forward(self, batch):
        return self.classifier.logits(batch).float().softmax(dim=-1).cpu()

    def postprocess(self, probabilities, text) -> dict:
        from ptcli.inference.results import top_predictions

        return {"text": text, "predictions": top_predictions(probabilities, self.labels, self.k, with_index=False)}

    def warmup(self):
        return "warm-up"
