"""How classify-audio serves: an uploaded sound file (WAV, FLAC, OGG) read, resampled and cut
or padded as the command does; each result is the command's --json object."""

from __future__ import annotations

TOP_K = 5


def servable(*, checkpoint, model, weights, device):
    import io

    import torch

    from ptcli.errors import UsageError
    from ptcli.results import top_predictions
    from ptcli.serving.spec import AUDIO, Servable

    from . import RECIPE
    from .audio import fit_length, resample, to_mono
    from .models import load_audio_classifier

    if weights is not None:
        raise UsageError("classify-audio takes no --weights; serve a checkpoint, or --model NAME")
    net, labels, clip = load_audio_classifier(checkpoint, model)
    getattr(net, "model", net).to(device).eval()
    k = min(TOP_K, len(labels))

    def decode(data: bytes):  # the samples only; resampling (torch) happens in predict
        return RECIPE.data_adapter.read(io.BytesIO(data))

    def predict(batch: list) -> list[dict]:
        with torch.inference_mode():
            waves = [fit_length(resample(to_mono(wave), rate, clip.sample_rate), clip.clip_samples) for wave, rate in batch]
            probabilities = net(torch.stack(waves).to(device)).float().softmax(-1).cpu()
        return [{"predictions": top_predictions(row, labels, k)} for row in probabilities]

    return Servable(kind=AUDIO, decode=decode, predict=predict, title=f"classify-audio ({checkpoint or model})",
                    warmup=(torch.zeros(1, clip.clip_samples), clip.sample_rate))
