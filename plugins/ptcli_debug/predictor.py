"""explain's inference contract: an image (a file or an upload) through any image classifier
(the "image-classifier" capability) and a class activation map of its evidence, drawn over
the image. `ptcli serve --recipe debug` answers with the overlay PNG (``encode``) or JSON
(label, score, layer and the PNG in base64)."""

from __future__ import annotations

from ptcli.inference.contract import IMAGE, Predictor, Sample, Source, sample_image_bytes


class Explainer(Predictor):
    kind = IMAGE
    collate = "list"
    media_type = "image/png"
    needs_gradients = True

    def __init__(self, classifier, device, *, method: str = "gradcam", class_name: str | None = None,
                 layer: str | None = None, title: str = "") -> None:
        from ptcli.capabilities import label_index
        from ptcli.errors import UsageError

        from .cam import METHODS

        if method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
        self.classifier, self.device, self.method, self.layer, self.title = classifier, device, method, layer, title
        self.index = label_index(classifier.labels, class_name, "--class") if class_name is not None else None

    @classmethod
    def load(cls, source: Source, device, **options) -> Explainer:
        from ptcli.capabilities import IMAGE_CLASSIFIER, load

        classifier = load(IMAGE_CLASSIFIER, checkpoint=source.checkpoint, model=source.model, weights=source.weights)
        return cls(classifier.to(device), device, title=f"explain ({classifier.source})", **options)

    def decode(self, item) -> Sample:
        return Sample(self.classifier.read(item))

    def preprocess(self, images: list) -> list:
        return list(images)

    def forward(self, images: list) -> list:
        from .overlay import explain_image

        return [explain_image(self.classifier, image, self.index, method=self.method, layer=self.layer) for image in images]

    def postprocess(self, row, meta) -> dict:
        import io

        picture, fields = row
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return {**fields, "png": buffer.getvalue()}

    def encode(self, result: dict) -> bytes:
        return result["png"]

    def warmup(self):
        return sample_image_bytes()
