"""The Vocos vocoder (``charactr/vocos-mel-24khz``): mel spectrogram in, 24 kHz waveform out.

vocos' ``MelSpectrogramFeatures`` + ``VocosBackbone`` (ConvNeXt blocks) + ``ISTFTHead`` (its own
inverse STFT with "same" padding), with vocos' parameter and buffer names, so its ``pytorch_model.bin``
loads unchanged. ``VocosConfig`` reads the published ``config.yaml``; configurations this vocoder does
not implement (Encodec features, conditional layer norm, MDCT heads) are refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .layers import Conv1d, Linear, initialising

__all__ = ["VocosConfig", "Vocos", "VocosBackbone", "ISTFTHead", "ISTFT", "MelSpectrogramFeatures"]

FEATURES = "vocos.feature_extractors.MelSpectrogramFeatures"
BACKBONE = "vocos.models.VocosBackbone"
HEAD = "vocos.heads.ISTFTHead"


@dataclass(frozen=True)
class VocosConfig:
    """vocos' ``config.yaml`` (the three ``init_args``), for the mel-spectrogram vocoder."""

    sample_rate: int = 24_000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 100
    padding: str = "center"  # the feature extractor's
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    layer_scale_init_value: float | None = None
    head_n_fft: int = 1024
    head_hop_length: int = 256
    head_padding: str = "same"

    @classmethod
    def from_yaml(cls, path: Path) -> VocosConfig:
        import yaml

        config = yaml.safe_load(Path(path).read_text())
        parts = {}
        for part, expected in (("feature_extractor", FEATURES), ("backbone", BACKBONE), ("head", HEAD)):
            section = (config or {}).get(part) or {}
            if section.get("class_path") != expected:
                raise ValueError(f"{path}: {part} is {section.get('class_path')!r}; this worker's vocoder "
                                 f"implements {expected} only (the charactr/vocos-mel-24khz configuration)")
            parts[part] = section.get("init_args") or {}
        features, backbone, head = parts["feature_extractor"], parts["backbone"], parts["head"]
        if backbone.get("adanorm_num_embeddings") is not None:
            raise ValueError(f"{path}: backbone.adanorm_num_embeddings is set (a conditional vocoder); "
                             "this worker's vocoder implements the unconditional one only")
        n_mels = features.get("n_mels", cls.n_mels)
        if backbone.get("input_channels", n_mels) != n_mels:
            raise ValueError(f"{path}: backbone.input_channels ({backbone['input_channels']}) is not the "
                             f"feature extractor's n_mels ({n_mels})")
        return cls(sample_rate=features.get("sample_rate", cls.sample_rate), n_fft=features.get("n_fft", cls.n_fft),
                   hop_length=features.get("hop_length", cls.hop_length), n_mels=n_mels,
                   padding=features.get("padding", cls.padding), dim=backbone["dim"],
                   intermediate_dim=backbone["intermediate_dim"], num_layers=backbone["num_layers"],
                   layer_scale_init_value=backbone.get("layer_scale_init_value"), head_n_fft=head["n_fft"],
                   head_hop_length=head["hop_length"], head_padding=head.get("padding", cls.head_padding))

    def to_yaml(self) -> str:
        """The ``config.yaml`` vocos would write for this vocoder (``Vocos.from_hparams`` reads it back)."""
        import yaml

        backbone = {"input_channels": self.n_mels, "dim": self.dim, "intermediate_dim": self.intermediate_dim,
                    "num_layers": self.num_layers}
        if self.layer_scale_init_value is not None:
            backbone["layer_scale_init_value"] = self.layer_scale_init_value
        config = {
            "feature_extractor": {"class_path": FEATURES, "init_args": {
                "sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop_length": self.hop_length,
                "n_mels": self.n_mels, "padding": self.padding}},
            "backbone": {"class_path": BACKBONE, "init_args": backbone},
            "head": {"class_path": HEAD, "init_args": {"dim": self.dim, "n_fft": self.head_n_fft,
                                                       "hop_length": self.head_hop_length, "padding": self.head_padding}},
        }
        return yaml.safe_dump(config, sort_keys=False)


class MelSpectrogramFeatures(nn.Module):
    """vocos' feature extractor: not used to decode, but its buffers are in the published state dict."""

    def __init__(self, sample_rate=24_000, n_fft=1024, hop_length=256, n_mels=100, padding="center"):
        super().__init__()
        import torchaudio

        if padding not in ("center", "same"):
            raise ValueError("padding must be 'center' or 'same'")
        self.padding = padding
        # On the CPU even while the vocoder is built on the meta device: torchaudio checks its filter bank's values.
        with torch.device("cpu"):
            self.mel_spec = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft,
                                                                 hop_length=hop_length, n_mels=n_mels,
                                                                 center=padding == "center", power=1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            pad = self.mel_spec.win_length - self.mel_spec.hop_length
            audio = nn.functional.pad(audio, (pad // 2, pad // 2), mode="reflect")
        return torch.log(torch.clip(self.mel_spec(audio), min=1e-7))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float):
        super().__init__()
        self.dwconv = Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x).transpose(1, 2)))))
        if self.gamma is not None:
            h = self.gamma * h
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 layer_scale_init_value: float | None = None):
        super().__init__()
        self.input_channels = input_channels
        self.embed = Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        scale = layer_scale_init_value or 1 / num_layers
        self.convnext = nn.ModuleList([ConvNeXtBlock(dim, intermediate_dim, scale) for _ in range(num_layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        if initialising():
            self.apply(self._init_weights)  # vocos' initialisation, so a seeded random vocoder is vocos' own

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, input_channels, frames) -> (batch, frames, dim)."""
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """vocos' inverse STFT: with "same" padding (torch.istft allows only centred frames), by overlap-add."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, padding: str = "same"):
        super().__init__()
        if padding not in ("center", "same"):
            raise ValueError("padding must be 'center' or 'same'")
        self.padding, self.n_fft, self.hop_length, self.win_length = padding, n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length, device="cpu"))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (batch, n_fft / 2 + 1, frames) complex -> (batch, samples)."""
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        pad = (self.win_length - self.hop_length) // 2
        frames = spec.shape[-1]
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        output_size = (frames - 1) * self.hop_length + self.win_length
        fold = dict(output_size=(1, output_size), kernel_size=(1, self.win_length), stride=(1, self.hop_length))
        y = nn.functional.fold(ifft, **fold)[:, 0, 0, pad:-pad]
        window_sq = self.window.square().expand(1, frames, -1).transpose(1, 2)
        envelope = nn.functional.fold(window_sq, **fold).squeeze()[pad:-pad]
        # vocos asserts envelope > 1e-11 here: true of a Hann window at this overlap, and the check
        # would wait for the GPU on every chunk.
        return y / envelope


class ISTFTHead(nn.Module):
    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same"):
        super().__init__()
        self.out = Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft=n_fft, hop_length=hop_length, win_length=n_fft, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, frames, dim) -> (batch, samples): magnitude (exp, at most 100) and phase per bin."""
        mag, p = self.out(x).transpose(1, 2).chunk(2, dim=1)
        mag = torch.clip(torch.exp(mag), max=1e2)
        return self.istft(mag * (torch.cos(p) + 1j * torch.sin(p)))


class Vocos(nn.Module):
    def __init__(self, config: VocosConfig = VocosConfig()):
        super().__init__()
        self.config = config
        self.feature_extractor = MelSpectrogramFeatures(config.sample_rate, config.n_fft, config.hop_length,
                                                        config.n_mels, config.padding)
        self.backbone = VocosBackbone(config.n_mels, config.dim, config.intermediate_dim, config.num_layers,
                                      config.layer_scale_init_value)
        self.head = ISTFTHead(config.dim, config.head_n_fft, config.head_hop_length, config.head_padding)

    @torch.inference_mode()
    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """A log mel spectrogram (batch, n_mels, frames) -> waveform (batch, samples)."""
        return self.head(self.backbone(features))
