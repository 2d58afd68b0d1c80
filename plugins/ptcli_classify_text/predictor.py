"""classify-text's inference contract: texts tokenised a batch at a time (counting those cut
to the model's limit), through the classifier; each result is the text and its top-k
predictions. The command and `ptcli serve` both run this."""

from __future__ import annotations

from ptcli.inference.contract import TEXT, Predictor, Sample, Source
from ptcli.inference.options import Option, Options


class TextClassifierPredictor(Predictor):
    kind = TEXT
    # Texts are tokenised in this process: Rust tokenizers are fast and threaded, so worker
    # processes would only add start-up time.
    default_batch_size, default_workers = 32, 0
    progress, failed, remote_code, input_key = "classifying", "could not be classified", True, "text"
    options = (
        Option("top_k", int, 2, "Predictions per text.", min=1, request=True, short="-k", metavar="K"),
        Option("max_length", int, None, "Cut texts to N tokens [default: the model's limit].", min=2, optional=True,
               metavar="N"),
    )

    def __init__(self, classifier, device, *, top_k: int = 2, title: str = "") -> None:
        from .inference import EncodeBatch

        classifier.model.to(device).eval()
        self.classifier, self.device, self.title = classifier, device, title
        self.labels = classifier.labels
        self.option_values = Options({"top_k": top_k, "max_length": None})
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

        text = check_text(item)
        return Sample(text, (item, not self.classifier.encoder.fits(text)))

    def preprocess(self, texts: list[str]):
        return self.encode(texts)

    def forward(self, batch):
        return self.classifier.logits(batch).float().softmax(dim=-1).cpu()

    def postprocess(self, probabilities, meta) -> dict:
        """The text, its predictions, and whether the model read only its start (``truncated``)."""
        from ptcli.inference.results import top_predictions

        text, cut = meta
        return {"text": text, "predictions": top_predictions(probabilities, self.labels, min(self.option_values.top_k, len(self.labels)), with_index=False),
                "truncated": cut}

    def describe(self, text, result: dict) -> str:
        from ptcli.inference.inputs import preview
        from ptcli.output import format_predictions

        return format_predictions(preview(text), result["predictions"])

    def summary(self, count: int) -> str | None:
        if not self.encode.truncated:
            return None
        return (f"{self.encode.truncated} of {count} texts were longer than {self.classifier.encoder.max_length} tokens "
                "and were cut to fit the model")

    def evaluate(self, data, *, batch_size: int) -> dict:
        """Accuracy, top-5, per-class precision and recall and the confusion matrix on a labelled
        file (or a folder's test file, else its val file), read as the checkpoint's data was."""
        import torch

        from ptcli.errors import UsageError
        from ptcli.inference.evaluation import classification_report, output_rows
        from ptcli.inference.results import Failed
        from ptcli.models.sidecars import read_sidecar
        from ptcli.output import warn

        from .evaluation import labelled_file
        from ptcli.inference.textfiles import read_labelled

        if self.source.checkpoint is None:
            raise UsageError("`ptcli eval` scores a checkpoint")
        layout = read_sidecar(self.source.checkpoint).get("data") or {}
        path = labelled_file(data)
        texts, labels, empty = read_labelled(path, fmt=layout.get("format", "auto"), text_column=layout.get("text_column", "text"),
                                             label_column=layout.get("label_column", "label"),
                                             encoding=layout.get("encoding", "utf-8"))
        known = {name: i for i, name in enumerate(self.labels)}
        unknown = sorted(set(labels) - set(known))
        if unknown:
            raise UsageError(f"{path} has labels the checkpoint does not know: {', '.join(map(repr, unknown[:5]))}; "
                             f"it knows {', '.join(self.labels)}")
        # Texts are tokenised in this process (see the command): no worker processes.
        rows = [row for _, row in output_rows(self, texts, batch_size=batch_size, workers=0) if not isinstance(row, Failed)]
        if self.encode.truncated:
            warn(f"{self.encode.truncated} of {len(texts)} texts were cut to {self.classifier.encoder.max_length} tokens")
        report = {"checkpoint": self.source.describe(), "data": str(path)}
        report.update(classification_report(torch.stack(rows), torch.tensor([known[label] for label in labels]), self.labels))
        report["failed"] = empty
        return report

    def format_evaluation(self, report: dict) -> str:
        from ptcli.inference.evaluation import format_classification_report

        return format_classification_report(report)

    def warmup(self):
        return "warm-up"
