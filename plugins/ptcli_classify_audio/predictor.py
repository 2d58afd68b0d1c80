"""classify-audio's inference contract: a sound file (a path or an upload) read, mixed down to
mono, resampled and cut or padded to the model's clip (or, with ``window``, split into
half-overlapping clips whose probabilities are averaged); each result is its top-k predictions.
The command and `ptcli serve` both run this."""

from __future__ import annotations

from ptcli.inference.contract import AUDIO, Predictor, Sample, Source
from ptcli.inference.options import Option, Options


class AudioClassifier(Predictor):
    kind = AUDIO
    options = (
        Option("top_k", int, 3, "Predictions per file.", min=1, request=True, short="-k", metavar="K"),
        Option("window", bool, False, "Classify long files in clip-length windows (half overlapping) and average "
               "them, instead of cutting them to one clip."),
    )
    progress = "classifying"
    failed = "could not be read"
    remote_code = True

    def __init__(self, net, labels, clip, device, *, top_k: int = 3, window: bool = False, title: str = "") -> None:
        getattr(net, "model", net).to(device).eval()  # a hub classifier wraps its model with its feature extractor
        self.net, self.labels, self.clip, self.device, self.title = net, labels, clip, device, title
        self.window = window
        self.option_values = Options({"top_k": top_k, "window": window})

    @classmethod
    def load(cls, source: Source, device, *, top_k: int = 3, window: bool = False) -> AudioClassifier:
        from ptcli.errors import UsageError

        from .models import load_audio_classifier

        if source.weights is not None:
            raise UsageError("classify-audio takes no --weights; give a checkpoint, or --model NAME")
        net, labels, clip = load_audio_classifier(source.checkpoint, source.model)
        return cls(net, labels, clip, device, top_k=top_k, window=window,
                   title=f"classify-audio ({source.describe()})")

    def decode(self, item) -> Sample:
        return decode_audio(item)

    def decoder(self):
        return decode_audio

    def preprocess(self, decoded: list):
        import torch

        from .audio import fit_length, resample, to_mono, windows

        waves = [resample(to_mono(torch.from_numpy(wave)), rate, self.clip.sample_rate) for wave, rate in decoded]
        if not self.window:
            return torch.stack([fit_length(wave, self.clip.clip_samples) for wave in waves])
        parts = [windows(wave, self.clip.clip_samples, self.clip.clip_samples // 2) for wave in waves]
        return torch.cat(parts), [int(part.shape[0]) for part in parts]

    def forward(self, batch):
        import torch

        if not self.window:
            return self.net(batch).float().softmax(-1).cpu()
        clips, counts = batch
        probabilities = self.net(clips).float().softmax(-1).cpu()
        return torch.stack([part.mean(0) for part in probabilities.split(counts)])

    def postprocess(self, probabilities, meta) -> dict:
        from ptcli.inference.results import top_predictions

        return {"predictions": top_predictions(probabilities, self.labels, min(self.option_values.top_k, len(self.labels)))}

    def describe(self, item, result: dict) -> str:
        from ptcli.output import format_predictions

        return format_predictions(str(item), result["predictions"])

    def evaluate(self, data, *, batch_size: int) -> dict:
        """Accuracy, per-class precision and recall and the confusion matrix on the test folds
        of an ESC-50 folder (those the checkpoint was trained to hold out), or on class folders."""
        from ptcli.errors import UsageError
        from ptcli.inference.evaluation import score_classifier
        from ptcli.models.sidecars import read_sidecar

        from .evaluation import labelled_clips

        if self.source.checkpoint is None:
            raise UsageError("`ptcli eval` scores a checkpoint")
        clips = labelled_clips(data, read_sidecar(self.source.checkpoint))
        unknown = sorted({c.label for c in clips} - set(self.labels))
        if unknown:
            raise UsageError(f"{data} has classes the checkpoint does not know: {', '.join(unknown)}; it knows {', '.join(self.labels)}")
        samples = [(c.path, self.labels.index(c.label)) for c in clips]
        return score_classifier(self, samples, self.labels, batch_size=batch_size, data=data, checkpoint=self.source.describe())

    def format_evaluation(self, report: dict) -> str:
        from ptcli.inference.evaluation import format_classification_report

        return format_classification_report(report)

    def warmup(self):
        import io

        import numpy as np
        import soundfile

        buffer = io.BytesIO()
        soundfile.write(buffer, np.zeros(self.clip.clip_samples, dtype=np.float32), self.clip.sample_rate, format="WAV")
        return buffer.getvalue()


def decode_audio(item) -> Sample:
    """The samples (numpy) and their rate only: resampling (torch) happens in preprocess. It
    needs nothing of the model."""
    import io

    from .audio import AudioFiles

    return Sample(AudioFiles().read_array(io.BytesIO(item) if isinstance(item, (bytes, bytearray)) else item))
