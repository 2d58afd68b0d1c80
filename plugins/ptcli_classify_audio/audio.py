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


#: Ten minutes of 48 kHz stereo: a file holding more samples is refused from its header rather
#: than read whole into memory (230 MB as float32; a FLAC of silence that long is a few KB);
#: PTCLI_MAX_AUDIO_SECONDS changes it.
DEFAULT_MAX_SECONDS = 600
#: The samples a second the budget counts in (48 kHz stereo).
BUDGET_RATE, BUDGET_CHANNELS = 48_000, 2
#: Sample rates read at all (a header can claim any): telephone speech to studio masters.
MIN_RATE, MAX_RATE = 1_000, 384_000
#: The most coefficients a resampling kernel may hold. torchaudio's grows with the product of
#: the two rates over their common divisor squared: 60013 Hz to 16 kHz would take 8.5 GB.
MAX_KERNEL = 2_000_000
#: How far a sample rate may be moved to keep that kernel small: 0.5% is inaudible and changes no
#: class (a 60013 Hz file is heard as 60025 Hz).
RATE_TOLERANCE = 0.005


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
            check_header(info.samplerate, info.frames, info.channels)  # before any sample is read
            data, rate = soundfile.read(source, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"cannot read audio: {one_line(exc)}") from exc
        if data.shape[0] == 0:
            raise InputError("cannot read audio: the file holds no samples")
        return data.T.copy(), int(rate)


def check_header(rate: int, frames: int, channels: int) -> None:
    """Refuse, from the header, audio whose rate is not one ptcli reads, that lasts longer than
    PTCLI_MAX_AUDIO_SECONDS, or that holds more samples than that long of 48 kHz stereo."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(f"audio at {rate} Hz: ptcli reads sample rates from {MIN_RATE} to {MAX_RATE} Hz")
    limit = max_audio_seconds()
    if frames / rate > limit:
        raise InputError(f"audio is {frames / rate:.0f} s long ({frames * channels * 4 / 2**30:.1f} GB as float32), above the "
                         f"limit of {limit:.0f} s; set PTCLI_MAX_AUDIO_SECONDS to allow it")
    budget = int(limit * BUDGET_RATE * BUDGET_CHANNELS)  # many channels, or a high rate, in fewer seconds
    if frames * channels > budget:
        raise InputError(f"audio holds {frames * channels / 1e6:.0f} million samples ({frames / rate:.0f} s of {channels} "
                         f"channel(s) at {rate} Hz, {frames * channels * 4 / 2**30:.1f} GB as float32), above the limit of "
                         f"{limit:.0f} s of 48 kHz stereo; set PTCLI_MAX_AUDIO_SECONDS to allow it")


def _kernel(rate: int, target: int) -> int:
    from math import gcd

    common = gcd(rate, target)
    return (rate // common) * (target // common)


def resampling_rate(rate: int, target: int) -> int:
    """``rate``, or the nearest rate within RATE_TOLERANCE whose kernel to ``target`` is small."""
    if _kernel(rate, target) <= MAX_KERNEL:
        return rate
    for step in (10, 25, 50, 100, 200, 400, 800, 1000, 2000, 4000, 8000):
        moved = round(rate / step) * step
        if moved and abs(moved - rate) <= RATE_TOLERANCE * rate and _kernel(moved, target) <= MAX_KERNEL:
            return moved
    raise InputError(f"cannot resample {rate} Hz to {target} Hz within ptcli's budget; convert the file to a common rate")


def to_mono(waveform):
    return waveform.mean(dim=0)


def resample(wave, rate: int, target: int):
    """``wave`` at ``target`` Hz, with a resampling kernel of bounded size (resampling_rate)."""
    if rate == target:
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, resampling_rate(rate, target), target)


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
