"""attack's inference contract: an image (a file or an upload) perturbed within ``eps`` against
any image classifier (the "image-classifier" capability), saved losslessly and classified
again as `ptcli classify-image` reads it. `ptcli serve --recipe adversarial` answers with the
adversarial PNG (``encode``) or JSON (clean and adversarial predictions, success, L-inf and L2,
and the PNG in base64)."""

from __future__ import annotations

from ptcli.inference.contract import Sample
from ptcli.plugins.capabilities import ImageClassifierPredictor


class Attacker(ImageClassifierPredictor):
    verb = "attack"

    def __init__(self, classifier, device, *, settings=None, target: str | None = None, title: str = "") -> None:
        from ptcli.plugins.capabilities import label_index

        from .robustness import AttackSettings

        super().__init__(classifier, device, title=title)
        self.settings = settings or AttackSettings()  # the command's defaults: PGD-10, L-inf 4/255
        self.target = label_index(classifier.labels, target, "--target") if target is not None else None

    def decode(self, item) -> Sample:
        """The upload itself: the attack reads it as the classifier does, then again as a PNG."""
        self.classifier.read(item)  # unreadable images are refused here, before the queue
        return Sample(item)

    def forward(self, items: list) -> list:
        from .files import attack_image

        return [attack_image(self.classifier, item, self.settings, self.target, self.device) for item in items]

    def postprocess(self, row, meta) -> dict:
        png, fields = row
        return {**fields, "png": png}
