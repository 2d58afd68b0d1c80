"""How classify-audio exports: the network on fixed-length mono clips (B, samples) at its
sample rate to logits (the mel front end, when it has one, inside). Reading, resampling and
padding stay in ptcli, as for the eager model."""

from __future__ import annotations


def exportable(*, checkpoint, model, weights, samples):
    import tempfile
    from pathlib import Path

    import torch

    from ptcli.errors import UsageError
    from ptcli.exporting.spec import Exportable, sidecar, variants
    from ptcli.plugins.tiny_inputs import write_clip

    from . import RECIPE
    from .audio import LoadClip
    from .models import load_audio_classifier

    if weights is not None:
        raise UsageError("classify-audio models take no --weights; export a checkpoint, or --model with a hub name")
    net, labels, clip = load_audio_classifier(checkpoint, model)
    if not isinstance(net, torch.nn.Module):
        raise UsageError(f"{model} runs a Hugging Face feature extractor outside its network; "
                         "only ptcli-trained checkpoints (audionet, spectrogram) export")
    load = LoadClip(clip, None)
    if samples:
        clips = [load(path) for path in samples]
    else:  # a rising tone, for want of a packaged recording
        with tempfile.TemporaryDirectory() as folder:
            clips = [load(write_clip(Path(folder) / "tone.wav", seconds=clip.clip_samples / clip.sample_rate, rate=clip.sample_rate))]

    def vary(wave, k):  # quieter and shifted copies: other inputs, still sound
        return wave.roll(k * 997, dims=-1) * (0.8 ** k)

    def sample(n: int):
        return (torch.stack(variants(clips, n, vary)),)

    meta = sidecar(RECIPE.name, checkpoint, model=model, classes=labels,
                   preprocessing={"sample_rate": clip.sample_rate, "clip_samples": clip.clip_samples})
    return Exportable(module=net, input_names=("waveform",), output_names=("logits",), sample=sample, meta=meta)
