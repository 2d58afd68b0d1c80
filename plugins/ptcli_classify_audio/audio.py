"""Reading sound files with soundfile (torchaudio 2.11's loader needs FFmpeg) and shaping them
for a model: mono mixdown, resampling (torchaudio), padding or cutting to the clip length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ptcli.errors import InputError, one_line

EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class ClipSpec:
    """What a model hears: sample rate and clip length in samples."""

    sample_rate: int
    clip_samples: int


#: One hour: a longer file is refused rather than read whole into memory (about 0.6 GB a channel
#: at 44.1 kHz); PTCLI_MAX_AUDIO_SECONDS changes it.
DEFAULT_MAX_SECONDS = 3600


def max_audio_seconds() -> float:
    import os

    value = os.environ.get("PTCLI_MAX_AUDIO_SECONDS", "").strip()
    try:
        return float(value) if value and float(value) > 0 else DEFAULT_MAX_SECONDS
    except ValueError:
        return DEFAULT_MAX_SECONDS


class AudioFiles:
    """The data adapter: a file to (waveform [channels, frames] float32, sample rate)."""

    extensions = EXTENSIONS

    def read(self, path):
        """``path``: a file, or a binary file object (a server's upload)."""
        import torch

        samples, rate = self.read_array(path)
        return torch.from_numpy(samples), rate

    def read_array(self, path):
        """(samples as a float32 numpy array [channels, frames], sample rate), without torch."""
        import soundfile

        source = path if hasattr(path, "read") else str(path)
        try:
            info = soundfile.info(source)
            if hasattr(source, "seek"):
                source.seek(0)
            limit = max_audio_seconds()
            if info.samplerate and info.frames / info.samplerate > limit:  # from the header, before reading
                raise InputError(f"audio is {info.frames / info.samplerate:.0f} s long "
                                 f"({info.frames * info.channels * 4 / 2**30:.1f} GB as float32), above the limit of "
                                 f"{limit:.0f} s; set PTCLI_MAX_AUDIO_SECONDS to allow it")
            data, rate = soundfile.read(source, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"cannot read audio: {one_line(exc)}") from exc
        if data.shape[0] == 0:
            raise InputError("cannot read audio: the file holds no samples")
        return data.T.copy(), int(rate)


def to_mono(waveform):
    return waveform.mean(dim=0)


def resample(wave, rate: int, target: int):
    if rate == target:
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, rate, target)


def fit_length(wave, samples: int):
    """Cut to ``samples``, or pad the end with silence (as ESC-50 pads short sources)."""
    import torch.nn.functional as F

    if wave.shape[-1] >= samples:
        return wave[..., :samples]
    return F.pad(wave, (0, samples - wave.shape[-1]))


def windows(wave, samples: int, hop: int):
    """Clips of ``samples`` every ``hop`` samples covering the whole wave (the last one padded)."""
    import torch

    if wave.shape[-1] <= samples:
        return fit_length(wave, samples)[None]
    starts = list(range(0, wave.shape[-1] - samples + 1, hop))
    if starts[-1] + samples < wave.shape[-1]:
        starts.append(starts[-1] + hop)
    return torch.stack([fit_length(wave[s:s + samples], samples) for s in starts])


class LoadClip:
    """read + mono + resample + one clip (or windows, stacked), for DataLoader workers."""

    def __init__(self, spec: ClipSpec, window_hop: int | None = None) -> None:
        self.spec, self.window_hop = spec, window_hop
        self.adapter = AudioFiles()

    def __call__(self, path: Path):
        wave, rate = self.adapter.read(path)
        wave = resample(to_mono(wave), rate, self.spec.sample_rate)
        if self.window_hop:
            return windows(wave, self.spec.clip_samples, self.window_hop)
        return fit_length(wave, self.spec.clip_samples)
