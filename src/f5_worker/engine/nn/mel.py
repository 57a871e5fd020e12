"""F5-TTS's mel spectrogram (``mel_spec_type`` "vocos"): what a reference voice is conditioned on.

torchaudio's ``MelSpectrogram`` with F5-TTS's settings (magnitude, centred STFT, HTK mel scale without
normalisation), then the log of values clamped at 1e-5. As in F5-TTS, the transform is no part of the
model's state dict and always runs in float32, whatever the model's dtype: one per device, made on first use.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MelSpec"]


class MelSpec(nn.Module):
    def __init__(self, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024, n_mel_channels: int = 100,
                 target_sample_rate: int = 24_000):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.n_mel_channels, self.target_sample_rate = n_mel_channels, target_sample_rate
        self._transforms: dict[torch.device, nn.Module] = {}  # a plain dict: outside the state dict and .to()

    def _transform(self, device: torch.device) -> nn.Module:
        if device not in self._transforms:
            import torchaudio

            self._transforms[device] = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.target_sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                hop_length=self.hop_length, n_mels=self.n_mel_channels, power=1, center=True, normalized=False,
                norm=None,
            ).to(device)
        return self._transforms[device]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (batch, samples) or (batch, 1, samples) at ``target_sample_rate`` -> log mel (batch, n_mels, frames)."""
        if wav.ndim == 3:
            wav = wav.squeeze(1)
        if wav.ndim != 2:
            raise ValueError(f"expected audio shaped (batch, samples), got {tuple(wav.shape)}")
        return self._transform(wav.device)(wav).clamp(min=1e-5).log()
