"""The models classify-audio trains: AudioNet (raw waveform) and a spectrogram CNN whose
backbone is EfficientNet-Lite0 (packaged ImageNet weights: offline) or a torchvision classifier
such as resnet50 (the book's; weights downloaded once)."""

from __future__ import annotations

from ptcli.errors import UsageError
from ptcli.plugins.recipe import ModelRegistry, ModelSpec

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50")


def build_audionet(num_classes: int = 2, width: int = 128, dropout: float = 0.3, **_):
    from .nets import AudioNet

    return AudioNet(num_classes, width=width, dropout=dropout)


def backbone(name: str, pretrained: bool):
    """An ImageNet image classifier, with its published weights when ``pretrained``."""
    if name == "efficientnet_lite0":
        if pretrained:
            from ptcli.vision.pretrained import efficientnet_lite0

            return efficientnet_lite0()
        from ptcli.vision.lite0 import EfficientNetLite0

        return EfficientNetLite0()
    if name in ("resnet18", "resnet50"):
        import torchvision

        model = torchvision.models.get_model(name, weights=None)
        if pretrained:
            from ptcli.models.state_dicts import load_state_dict
            from ptcli.models.weights import WeightsSpec, resolve

            published = torchvision.models.get_model_weights(name).IMAGENET1K_V1
            spec = WeightsSpec(name=name, filename=published.url.rsplit("/", 1)[-1], url=published.url, cache="torch-hub")
            model.load_state_dict(load_state_dict(resolve(spec)))
        return model
    raise UsageError(f"unknown backbone {name!r}; one of {', '.join(BACKBONES)}")


def build_spectrogram(num_classes: int = 2, *, backbone_name: str = "efficientnet_lite0", pretrained: bool = False,
                      sample_rate: int = 22050, n_mels: int = 128, n_fft: int = 1024, hop: int = 512, freq_mask: int = 0,
                      time_mask: int = 0, **_):
    from .nets import SpectrogramNet

    return SpectrogramNet(backbone(backbone_name, pretrained), num_classes, sample_rate=sample_rate, n_mels=n_mels,
                          n_fft=n_fft, hop=hop, freq_mask=freq_mask, time_mask=time_mask)


def make_registry() -> ModelRegistry:
    from ptcli.models.hub import add_hub_resolver

    from .hub import DEFAULT_HUB_MODEL

    registry = ModelRegistry("classify-audio", list_hint="models: audionet, spectrogram (train them), or a Hugging Face "
                             "audio classifier (org/name) or local folder")
    registry.add(ModelSpec(name="audionet", build=build_audionet, description="the book's AudioNet (ch. 6) on raw waveforms"))
    registry.add(ModelSpec(name="spectrogram", build=build_spectrogram,
                           description="mel spectrogram into an ImageNet CNN (EfficientNet-Lite0 offline, or resnet50)"))
    add_hub_resolver(registry, listed=[DEFAULT_HUB_MODEL])
    return registry


def _hub_classifier(name: str, weights):
    from ptcli.models.loading import LoadedModel

    from .hub import load_hub_classifier

    if name in ("audionet", "spectrogram"):
        raise UsageError(f"model {name} has no published weights: train it with `ptcli train recipes/esc50-{name}.yaml` and pass --checkpoint")
    hub = load_hub_classifier(name)
    return LoadedModel(hub, hub.labels, {"sample_rate": hub.sample_rate}, name)


def load_audio_classifier(checkpoint, model_name: str | None):
    """(model, classes, ClipSpec): a trained checkpoint, or a Hugging Face audio classifier."""
    from ptcli.errors import CheckpointError
    from ptcli.models.loading import load_model

    from . import RECIPE
    from .audio import ClipSpec
    from .hub import CLIP_SECONDS, DEFAULT_HUB_MODEL

    loaded = load_model(RECIPE, checkpoint=checkpoint, model=model_name, default=DEFAULT_HUB_MODEL,
                        options=("--model", "--checkpoint"), from_name=_hub_classifier)
    pre = loaded.preprocessing
    if checkpoint is None:
        return loaded.model, loaded.labels, ClipSpec(pre["sample_rate"], int(pre["sample_rate"] * CLIP_SECONDS))
    try:
        clip = ClipSpec(int(pre["sample_rate"]), int(pre["clip_samples"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint}: cannot rebuild its model: its preprocessing lacks {exc}") from exc
    from .audio import MAX_RATE, MIN_RATE

    if not MIN_RATE <= clip.sample_rate <= MAX_RATE or not 0 < clip.clip_samples <= clip.sample_rate * 600:
        raise CheckpointError(f"checkpoint {checkpoint}: its preprocessing asks for {clip.clip_samples} samples at "
                              f"{clip.sample_rate} Hz; a clip is at most 10 minutes at {MIN_RATE} to {MAX_RATE} Hz")
    return loaded.model, loaded.labels, clip
