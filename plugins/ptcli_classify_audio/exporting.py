"""How classify-audio exports: the network on fixed-length mono clips (B, samples) at its
sample rate to logits (the mel front end, when it has one, inside). Reading, resampling and
padding stay in ptcli, as for the eager model."""

from __future__ import annotations


def exportable(*, checkpoint, model, weights, samples):
    import tempfile
    from pathlib import Path

    import torch

    from ptcli.errors import UsageError
    from ptcli.exporting.spec import Exportable, predictor_inputs, sidecar, variants
    from ptcli.inference.contract import Source
    from ptcli.plugins.tiny_inputs import write_clip

    from . import RECIPE
    from .predictor import AudioClassifier

    if weights is not None:
        raise UsageError("classify-audio models take no --weights; export a checkpoint, or --model with a hub name")
    classifier = AudioClassifier.load(Source(checkpoint, model), torch.device("cpu"))
    net, labels, clip = classifier.net, classifier.labels, classifier.clip
    if not isinstance(net, torch.nn.Module):
        raise UsageError(f"{model} runs a Hugging Face feature extractor outside its network; "
                         "only ptcli-trained checkpoints (audionet, spectrogram) export")
    if samples:  # the command's own decode and preprocess
        clips = predictor_inputs(classifier, samples)
    else:  # a rising tone, for want of a packaged recording
        with tempfile.TemporaryDirectory() as folder:
            tone = write_clip(Path(folder) / "tone.wav", seconds=clip.clip_samples / clip.sample_rate, rate=clip.sample_rate)
            clips = predictor_inputs(classifier, [tone])

    def vary(wave, k):  # quieter and shifted copies: other inputs, still sound
        return wave.roll(k * 997, dims=-1) * (0.8 ** k)

    def sample(n: int):
        return (torch.stack(variants(clips, n, vary)),)

    meta = sidecar(RECIPE.name, checkpoint, model=model, classes=labels,
                   preprocessing={"sample_rate": clip.sample_rate, "clip_samples": clip.clip_samples})
    return Exportable(module=net, input_names=("waveform",), output_names=("logits",), sample=sample, meta=meta)
