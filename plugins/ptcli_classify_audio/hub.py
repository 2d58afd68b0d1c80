"""Pretrained audio classifiers from the Hugging Face Hub (by name, downloaded once) or a local
folder, through transformers' feature extractors: the default for `classify-audio` without a
checkpoint is an Audio Spectrogram Transformer fine-tuned on AudioSet's 527 classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ptcli.errors import UsageError, flatten

DEFAULT_HUB_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"
#: Clip length the hub models hear (AST's feature extractor takes about 10 s).
CLIP_SECONDS = 10.0


@dataclass
class HubAudioClassifier:
    model: Any
    extractor: Any
    labels: list[str]

    @property
    def sample_rate(self) -> int:
        return int(self.extractor.sampling_rate)

    def __call__(self, waves):
        """Logits for a batch of mono waveforms [B, samples] at ``sample_rate``."""
        device = next(self.model.parameters()).device
        features = self.extractor([w.cpu().numpy() for w in waves], sampling_rate=self.sample_rate, return_tensors="pt",
                                  padding=True)
        return self.model(**{k: v.to(device) for k, v in features.items()}).logits


def load_hub_classifier(name: str) -> HubAudioClassifier:
    import torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

    from ptcli.models.hub import model_folder, quiet_transformers, trust_remote_code

    from . import RECIPE

    folder = model_folder(name, RECIPE.model_registry, no_weights_hint="train it with `ptcli train recipes/esc50-*.yaml` "
                          "and pass --checkpoint")
    quiet_transformers()
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code())
    architectures = config.architectures or []
    if not any(a.endswith(("ForAudioClassification", "ForSequenceClassification")) for a in architectures):
        raise UsageError(f"{name} is not an audio classifier (architectures: {', '.join(architectures) or 'unknown'})")
    try:
        extractor = AutoFeatureExtractor.from_pretrained(str(folder), trust_remote_code=trust_remote_code())
        model = AutoModelForAudioClassification.from_pretrained(str(folder), trust_remote_code=trust_remote_code(), dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{name} cannot be loaded as an audio classifier: {flatten(exc, 200)}") from exc
    labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    return HubAudioClassifier(model, extractor, labels)
