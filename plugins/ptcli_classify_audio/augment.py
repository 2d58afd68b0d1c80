"""Waveform augmentation for training clips only: gain, time shift, noise at a random SNR,
speed and pitch changes (torchaudio 2.11's transforms). Randomness comes from torch's generator."""

from __future__ import annotations


class WaveAugment:
    def __init__(self, sample_rate: int, *, gain_db: float = 0.0, shift: float = 0.0, noise_snr: float | None = None,
                 speed: float = 0.0, pitch: float = 0.0) -> None:
        self.rate, self.gain_db, self.shift, self.noise_snr = sample_rate, gain_db, shift, noise_snr
        self.speed, self.pitch = speed, pitch

    @property
    def active(self) -> bool:
        return bool(self.gain_db or self.shift or self.noise_snr is not None or self.speed or self.pitch)

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        import torch

        return float(torch.empty(()).uniform_(low, high))

    def __call__(self, wave):
        import torch
        import torchaudio.functional as AF

        length = wave.shape[-1]
        if self.speed:
            factor = self._uniform(1 - self.speed, 1 + self.speed)
            from .audio import resample

            # played back at the original rate; a rate in whole 100 Hz keeps the resampler's kernel small
            wave = resample(wave, self.rate, max(100, round(self.rate / factor / 100) * 100))
        if self.pitch:
            steps = self._uniform(-self.pitch, self.pitch)
            wave = AF.pitch_shift(wave[None], self.rate, steps)[0]
        if wave.shape[-1] != length:
            from .audio import fit_length

            wave = fit_length(wave, length)
        if self.gain_db:
            wave = wave * 10 ** (self._uniform(-self.gain_db, self.gain_db) / 20)
        if self.shift:
            wave = torch.roll(wave, int(self._uniform(-self.shift, self.shift) * length))
        if self.noise_snr is not None:
            snr = torch.tensor([self._uniform(self.noise_snr, self.noise_snr + 20)])
            wave = AF.add_noise(wave[None], torch.randn_like(wave)[None], snr)[0]
        return wave
