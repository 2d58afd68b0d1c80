"""ESRGAN's losses (book ch. 9): pixel L1, perceptual (features of a pretrained network before
activation), and the relativistic average GAN loss, plus PSNR/SSIM on the Y channel."""

from __future__ import annotations

from ptcli.errors import UsageError
from ptcli.models.weights import WeightsSpec

VGG19_WEIGHTS = WeightsSpec(name="vgg19", filename="vgg19-dcbb9e9d.pth", url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                            cache="torch-hub", license="BSD-3-Clause (torchvision)")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def feature_network(name: str, weights_path=None):
    """A frozen feature extractor: vgg19 up to conv5_4 before its ReLU (ESRGAN's choice;
    ImageNet weights are a download, or a local file), or efficientnet_lite0's first five
    stages (packaged weights: works offline)."""
    import torch

    from ptcli.vision import pretrained

    if name == "vgg19":
        net = vgg19(weights_path).features[:35]
    elif name == "efficientnet_lite0":
        model = pretrained.efficientnet_lite0(weights_path)
        net = torch.nn.Sequential(model.conv_stem, model.bn1, *model.blocks[:5])
    else:
        raise UsageError(f"unknown feature network {name!r}; loss.perceptual_network is vgg19 or efficientnet_lite0")
    net.eval().requires_grad_(False)
    return net


def vgg19(weights_path=None):
    """torchvision's VGG19 with its ImageNet weights (downloaded once, or a local file)."""
    import torchvision

    from ptcli.models.state_dicts import load_state_dict
    from ptcli.models.weights import resolve

    model = torchvision.models.vgg19(weights=None)
    model.load_state_dict(load_state_dict(weights_path or resolve(VGG19_WEIGHTS)))
    return model


class PerceptualLoss:
    def __init__(self, network, device) -> None:
        import torch

        self.network = network.to(device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, fake, real):
        import torch.nn.functional as F

        features = lambda x: self.network((x - self.mean) / self.std)  # noqa: E731
        return F.l1_loss(features(fake), features(real).detach())


def discriminator_adversarial(real_logits, fake_logits):
    """The relativistic average discriminator loss (ESRGAN, eq. 1): real should look more
    real than the average fake, and fake less real than the average real."""
    import torch.nn.functional as F

    def bce(logits, target: float):
        return F.binary_cross_entropy_with_logits(logits, logits.new_full(logits.shape, target))

    return (bce(real_logits - fake_logits.mean(), 1.0) + bce(fake_logits - real_logits.mean(), 0.0)) / 2


def generator_adversarial(real_logits, fake_logits):
    """The generator's side (ESRGAN, eq. 2): the same comparison with the labels swapped."""
    import torch.nn.functional as F

    def bce(logits, target: float):
        return F.binary_cross_entropy_with_logits(logits, logits.new_full(logits.shape, target))

    return (bce(real_logits - fake_logits.mean(), 0.0) + bce(fake_logits - real_logits.mean(), 1.0)) / 2


def y_channel(rgb):
    """ITU-R BT.601 luma in [0, 1] (what SR papers report PSNR and SSIM on)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def sr_metrics():
    from torchmetrics import MetricCollection
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    return MetricCollection({"psnr": PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3)), "ssim": StructuralSimilarityIndexMeasure(data_range=1.0)})
