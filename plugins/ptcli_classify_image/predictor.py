"""classify-image's inference contract: an image (a file or an upload) resized and cropped by
Pillow, normalised, through the classifier; each result is its top-k predictions. The command
and `ptcli serve` both run this."""

from __future__ import annotations

from ptcli.inference.contract import IMAGE, Predictor, Sample, Source, sample_image_bytes
from ptcli.inference.options import Option, Options


class ImageClassifier(Predictor):
    kind = IMAGE
    options = (
        Option("top_k", int, 5, "Predictions per image.", min=1, request=True, short="-k", metavar="K"),
        Option("defense", str, None, "An input filter before the model, against adversarial images: jpeg:75, "
               "median:3 or bits:4 (measure it with `ptcli defend`).", optional=True, metavar="F"),
    )
    progress = "classifying"
    failed = "could not be read"

    def __init__(self, net, labels, preprocessing, device, *, top_k: int = 5, defense: str | None = None,
                 title: str = "") -> None:
        import torch

        from .data import Preprocess

        in_filter = None
        if defense is not None:
            from ptcli.vision.defenses import parse_filter

            in_filter = parse_filter(defense)
        # channels_last: convolutions run faster so (EfficientNet-Lite0 on 2 CPU cores: 10.3 against
        # 14.6 ms a forward at batch 1, 9.5 against 17.4 ms an image at 16; bench/classify_throughput.py).
        self.net = net.to(device).eval().to(memory_format=torch.channels_last)
        self._folded = self._folded_from = None
        self.labels, self.device, self.title = labels, device, title
        self.option_values = Options({"top_k": top_k, "defense": defense})
        self.pre = Preprocess(preprocessing)
        self.in_filter = in_filter

    @classmethod
    def check_options(cls, options: dict) -> None:
        if options.get("defense") is not None:
            from ptcli.vision.defenses import parse_filter

            parse_filter(options["defense"])  # a malformed filter is a usage error before any model loads

    @classmethod
    def load(cls, source: Source, device, *, top_k: int = 5, defense: str | None = None) -> ImageClassifier:
        from .models import DEFAULT_MODEL, load_classifier

        net, labels, preprocessing = load_classifier(source.model, source.weights, source.checkpoint)
        return cls(net, labels, preprocessing, device, top_k=top_k, defense=defense,
                   title=f"classify-image ({source.describe(DEFAULT_MODEL)})")

    def decode(self, item) -> Sample:
        return DecodeImage(self.pre)(item)

    def decoder(self) -> DecodeImage:
        return DecodeImage(self.pre)

    def preprocess(self, crops: list):
        import torch

        # With a defence the batch stays in [0, 1] pixels: it filters, then normalises, in forward.
        convert = self.pre.tensor if self.in_filter is not None else self.pre.of_crop
        return torch.stack([convert(crop) for crop in crops])

    @property
    def folded(self):
        """What forward runs: ``net`` with its BatchNorms folded where it can (ptcli.models.
        fusion), made once per network; ``net`` itself stays as loaded, for exports, attacks and
        activation maps."""
        if self._folded_from is not self.net:
            import torch

            from ptcli.models.fusion import folded

            self._folded, self._folded_from = folded(self.net).to(memory_format=torch.channels_last), self.net
        return self._folded

    def forward(self, batch):
        import torch

        if self.in_filter is not None:
            batch = self.pre.normalize(self.in_filter(batch))
        return self.folded(batch.contiguous(memory_format=torch.channels_last)).float().softmax(dim=-1).cpu()

    def postprocess(self, probabilities, meta) -> dict:
        from ptcli.inference.results import top_predictions

        return {"predictions": top_predictions(probabilities, self.labels, min(self.option_values.top_k, len(self.labels)))}

    def describe(self, item, result: dict) -> str:
        from ptcli.output import format_predictions

        return format_predictions(str(item), result["predictions"])

    def evaluate(self, data, *, batch_size: int) -> dict:
        """Accuracy, top-5, per-class precision and recall and the confusion matrix on an
        ImageFolder (DATA/<class>/, or its val/)."""
        from ptcli.inference.evaluation import score_classifier

        from .evaluation import labelled_images

        return score_classifier(self, labelled_images(data, self.labels), self.labels, batch_size=batch_size, data=data,
                                checkpoint=self.source.describe())

    def format_evaluation(self, report: dict) -> str:
        from ptcli.inference.evaluation import format_classification_report

        return format_classification_report(report)

    def warmup(self):
        return sample_image_bytes()


class DecodeImage:
    """An image file or upload, resized and cropped as the model takes it: all that decoding
    needs is the preprocessing (it pickles without the model)."""

    def __init__(self, pre) -> None:
        self.pre = pre

    def __call__(self, item) -> Sample:
        from ptcli.vision.imaging import read_image

        return Sample(self.pre.cropped(self.pre.resized(read_image(item))))
