"""classify-image's "image-classifier" capability (ptcli.plugins.capabilities): the classifier on
pixels in [0, 1], with its preprocessing as differentiable modules, for the adversarial
commands. The resize uses torch's antialiased interpolation, the algorithm of Pillow's
resize that the command itself uses (they agree to about one grey level; a test checks that
both give the same prediction)."""

from __future__ import annotations

from pathlib import Path


def _modules():
    import torch
    from torch import nn

    class Normalized(nn.Module):
        """(pixels - mean) / std, then the network."""

        def __init__(self, net, mean, std) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, pixels):
            return self.net((pixels - self.mean) / self.std)

    class Pipeline(nn.Module):
        """Original-size pixels to logits: the short side resized to ``resize``, the centre
        ``crop`` cut out, normalised; differentiable throughout."""

        def __init__(self, network, resize: int, crop: int, interpolation: str) -> None:
            super().__init__()
            self.network, self.resize, self.crop = network, resize, crop
            self.mode = {"bicubic": "bicubic", "bilinear": "bilinear"}.get(interpolation, "bilinear")

        def forward(self, pixels):
            import torch.nn.functional as F

            height, width = pixels.shape[-2:]
            short, long = min(width, height), max(width, height)
            new_short, new_long = self.resize, int(self.resize * long / short)
            size = (new_long, new_short) if width <= height else (new_short, new_long)  # (h, w)
            if size != (height, width):
                pixels = F.interpolate(pixels, size=size, mode=self.mode, antialias=True, align_corners=False).clamp(0, 1)
            h, w = size
            if self.crop > h or self.crop > w:  # as the command: zero padding around a small image
                pad_w, pad_h = max(self.crop - w, 0), max(self.crop - h, 0)
                pixels = F.pad(pixels, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
                h, w = pixels.shape[-2:]
            top, left = int(round((h - self.crop) / 2.0)), int(round((w - self.crop) / 2.0))
            return self.network(pixels[..., top: top + self.crop, left: left + self.crop])

    class AsRead(nn.Module):
        """Original-size pixels to logits by the command's own path: each image rounded to 8
        bits as the saved PNG holds it, resized and cropped by Pillow as `ptcli classify-image`
        reads a file, then the network. Not differentiable: for attacks that only query the
        model (Square), whose success is then the saved file's."""

        def __init__(self, network, pixels) -> None:
            super().__init__()
            self.network, self.pixels = network, pixels

        def forward(self, images):
            import torch
            from PIL import Image

            eight_bit = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            crops = torch.stack([self.pixels(Image.fromarray(image)) for image in eight_bit])
            return self.network(crops.to(images.device))

    return Normalized, Pipeline, AsRead


class PixelClassifier:
    """The capability, made from the recipe's Predictor (its network, labels and preprocessing)."""

    def __init__(self, predictor) -> None:
        from . import RECIPE
        from .models import DEFAULT_MODEL

        self.predictor = predictor
        self.net = predictor.net.eval()
        self.labels = list(predictor.labels)
        self.preprocessing = dict(predictor.pre.spec)
        source = predictor.source
        self.source = str(source.checkpoint or source.weights or source.model or DEFAULT_MODEL)
        self.preprocess = predictor.pre
        self.adapter = RECIPE.data_adapter
        preprocessing = self.preprocessing
        normalized, pipeline, as_read = _modules()
        self._network = normalized(self.net, list(preprocessing["mean"]), list(preprocessing["std"]))
        self._pipeline = pipeline(self._network, int(preprocessing["resize"]), int(preprocessing["crop"]),
                                  str(preprocessing.get("interpolation", "bilinear")))
        self._as_read = as_read(self._network, self.preprocess.pixels)

    def to(self, device) -> PixelClassifier:
        self._pipeline.to(device)  # the network it shares with as_read moves with it
        self.predictor.device = device
        return self

    def read(self, path: Path):
        return self.adapter.read(path)

    def model_input(self, image):
        return self.preprocess.pixels(image)

    def network(self):
        return self._network

    def pipeline(self):
        return self._pipeline

    def as_read(self):
        return self._as_read

    def input_region(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) of the original image that the model input covers (the centre crop of the
        resized image, in original pixels; larger than the image when the crop pads it)."""
        resize, crop = int(self.preprocessing["resize"]), int(self.preprocessing["crop"])
        scale = resize / min(width, height)
        resized_w, resized_h = self.preprocess.resized_size(width, height)
        left, top = round((resized_w - crop) / 2.0), round((resized_h - crop) / 2.0)
        return left / scale, top / scale, crop / scale, crop / scale

    def predict_file(self, path: Path) -> tuple[int, float]:
        """Top-1 of a file (or its bytes) through the Predictor: the command's own decode,
        preprocess and forward."""
        import torch

        predictor = self.predictor
        with torch.inference_mode():
            batch = predictor.preprocess([predictor.decode(path).data]).to(predictor.device)
            score, index = predictor.forward(batch)[0].max(0)
        return int(index), float(score)

    def labelled(self, data: Path) -> list[tuple[Path, int]]:
        from .evaluation import labelled_images

        return labelled_images(data, self.labels)


def load_pixel_classifier(*, checkpoint=None, model=None, weights=None) -> PixelClassifier:
    import torch

    from ptcli.inference.contract import Source

    from .predictor import ImageClassifier

    source = Source(checkpoint, model, weights)
    predictor = ImageClassifier.load(source, torch.device("cpu"))
    predictor.source = source
    return PixelClassifier(predictor)
