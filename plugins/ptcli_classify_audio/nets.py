"""The book's audio models (ch. 6): AudioNet, a 1-D CNN on the raw waveform, and a pretrained
image CNN on mel spectrograms computed on the device."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2), nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(4)]


class AudioNet(nn.Module):
    """The book's layers (an 80-sample first kernel with stride 4, then 3-sample kernels, each
    followed by batch norm, ReLU and 4x max pooling); the printed version's fixed flatten size
    only fits 8 kHz x 4 s, so global average pooling ends the stack instead and any clip
    length works."""

    def __init__(self, num_classes: int, width: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(*_block(1, w, 80, 4), *_block(w, w, 3), *_block(w, 2 * w, 3), *_block(2 * w, 4 * w, 3))
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, wave):
        x = self.features(wave.unsqueeze(1))
        return self.classifier(self.dropout(self.pool(x).flatten(1)))


class SpecAugment(nn.Module):
    """Frequency and time masking (torchaudio's transforms), in training mode only."""

    def __init__(self, freq_mask: int, time_mask: int, masks: int = 2) -> None:
        super().__init__()
        import torchaudio.transforms as T

        steps = []
        for _ in range(masks):
            if freq_mask:
                steps.append(T.FrequencyMasking(freq_mask, iid_masks=True))
            if time_mask:
                steps.append(T.TimeMasking(time_mask, iid_masks=True))
        self.steps = nn.Sequential(*steps)

    def forward(self, spec):
        return self.steps(spec) if self.training and len(self.steps) else spec


class MelFrontend(nn.Module):
    """Waveform [B, samples] to a log-mel image [B, 3, mels, frames], normalised per clip."""

    def __init__(self, sample_rate: int, n_mels: int = 128, n_fft: int = 1024, hop: int = 512) -> None:
        super().__init__()
        import torchaudio.transforms as T

        self.mel = T.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
        self.db = T.AmplitudeToDB(top_db=80)

    def forward(self, wave):
        with torch.autocast(wave.device.type, enabled=False):  # the FFT wants fp32
            # [B, 1, mels, frames]: AmplitudeToDB's top_db floor is then set per clip; on
            # [B, mels, frames] it would take one maximum over the whole batch.
            spec = self.db(self.mel(wave.float()).unsqueeze(1)).squeeze(1)
        return spec


class SpectrogramNet(nn.Module):
    """MelFrontend -> SpecAugment -> an image CNN whose last Linear layer is replaced. Also
    accepts spectrograms directly ([B, mels, frames]), for cached training data."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, sample_rate: int, n_mels: int = 128, n_fft: int = 1024,
                 hop: int = 512, freq_mask: int = 0, time_mask: int = 0) -> None:
        super().__init__()
        self.frontend = MelFrontend(sample_rate, n_mels, n_fft, hop)
        self.augment = SpecAugment(freq_mask, time_mask)
        replace_classifier(backbone, num_classes)
        self.backbone = backbone

    def forward(self, x):
        spec = self.frontend(x) if x.dim() == 2 else x
        spec = self.augment(spec)
        mean = spec.mean(dim=(1, 2), keepdim=True)
        std = spec.std(dim=(1, 2), keepdim=True).clamp(min=1e-5)
        image = ((spec - mean) / std).unsqueeze(1).expand(-1, 3, -1, -1)
        return self.backbone(image)


def replace_classifier(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer of an image classifier for one with ``num_classes`` outputs."""
    last_name, last = None, None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = name, module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no Linear layer to replace")
    parent = model
    *path, leaf = last_name.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, leaf, nn.Linear(last.in_features, num_classes))
