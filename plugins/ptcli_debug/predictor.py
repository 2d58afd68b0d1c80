"""explain's inference contract: an image (a file or an upload) through any image classifier
(the "image-classifier" capability) and a class activation map of its evidence, drawn over
the image. `ptcli serve --recipe debug` answers with the overlay PNG (``encode``) or JSON
(label, score, layer and the PNG in base64)."""

from __future__ import annotations

from ptcli.inference.contract import Sample
from ptcli.inference.options import Option
from ptcli.plugins.capabilities import ImageClassifierPredictor


class Explainer(ImageClassifierPredictor):
    verb = "explain"
    options = (
        Option("method", str, "gradcam", "cam (networks ending in global pooling and one Linear), gradcam (any CNN), "
               "gradcam++.", choices=("cam", "gradcam", "gradcam++"), metavar="cam|gradcam|gradcam++"),
        Option("class_name", str, None, "Explain this class [default: the top prediction].", flag="--class",
               metavar="LABEL", optional=True),
        Option("layer", str, None, "The layer whose activations are mapped [default: the last convolution].",
               metavar="NAME", optional=True),
    )
    writes, default_output, written = "_cam", ".", "the maps"
    progress, failed = "explaining", "could not be explained"

    def __init__(self, classifier, device, *, method: str = "gradcam", class_name: str | None = None,
                 layer: str | None = None, title: str = "") -> None:
        from ptcli.errors import UsageError
        from ptcli.plugins.capabilities import label_index

        from .cam import METHODS

        if method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
        super().__init__(classifier, device, title=title)
        self.method, self.layer = method, layer
        self.index = label_index(classifier.labels, class_name, "--class") if class_name is not None else None

    def decode(self, item) -> Sample:
        return Sample(self.classifier.read(item))

    def forward(self, images: list) -> list:
        from .overlay import explain_image

        return [explain_image(self.classifier, image, self.index, method=self.method, layer=self.layer) for image in images]

    def postprocess(self, row, meta) -> dict:
        import io

        from ptcli.inference.results import Artifact

        picture, fields = row
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return {**fields, "png": Artifact(buffer.getvalue(), "image/png")}

    def describe(self, path, r: dict) -> str:
        return f"{path} -> {r['output']}: {r['label']} ({r['score']:.3f}), layer {r['layer']}"
