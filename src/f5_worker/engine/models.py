"""Build F5-TTS and Vocos: from checkpoints, or with seeded random weights.

Without checkpoint files the real ``CFM(DiT)`` and ``Vocos`` are built with random
weights: ``tiny-random`` at a toy size (tests and offline smoke runs), or a real
size such as ``F5TTS_v1_Base`` for speed benchmarks (speed does not depend on weight
values). The whole synthesis path runs; the audio is noise, and is labelled so. Layers DiT initialises
to zero get small random values, so the transformer's output reaches the audio (tests can see it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ..settings import TINY_RANDOM
from . import f5lib

__all__ = ["ModelFiles", "TINY_RANDOM", "build_model", "build_vocoder", "N_MELS", "SAMPLE_RATE", "HOP_LENGTH"]

SAMPLE_RATE = 24_000
N_MELS = 100
HOP_LENGTH = 256
N_FFT = 1024
# Small enough for a 2-core CI machine, with every block F5TTS_v1_Base has (conv text
# embedding, several heads, the ODE loop): only widths and depth differ.
TINY_ARCH = dict(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1,
                 text_mask_padding=True, qk_norm=None, pe_attn_head=None)
TINY_VOCOS = dict(dim=32, intermediate_dim=64, num_layers=1)
VOCOS_MEL_24KHZ = dict(dim=512, intermediate_dim=1536, num_layers=8)  # charactr/vocos-mel-24khz config.yaml
TINY_SEED = 0


@dataclass(frozen=True)
class ModelFiles:
    """What the model cache verified (``models.ModelsReport.paths``); None for tiny-random."""

    checkpoint: Path | None = None
    vocab: Path | None = None
    vocoder_config: Path | None = None
    vocoder_weights: Path | None = None


def model_arch(model: str) -> dict:
    """The DiT arguments F5-TTS ships for ``model`` (its ``configs/<model>.yaml``)."""
    if model == TINY_RANDOM:
        return dict(TINY_ARCH)
    config = yaml.safe_load(f5lib.package_file(f"configs/{model}.yaml").read_text())
    return dict(config["model"]["arch"])


def build_model(model: str, files: ModelFiles, *, attn_backend: str, attn_mask_enabled: bool, device: str):
    arch = model_arch(model) | {"attn_backend": attn_backend, "attn_mask_enabled": attn_mask_enabled}
    if files.checkpoint is not None:
        # F5-TTS's own loader: EMA weights, fp16 on CUDA, its key patches.
        return f5lib.utils_infer.load_model(f5lib.DiT, arch, str(files.checkpoint), vocab_file=str(files.vocab), device=device)
    vocab = files.vocab or f5lib.package_file("infer/examples/vocab.txt")
    vocab_char_map, vocab_size = f5lib.get_tokenizer(str(vocab), "custom")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        cfm = f5lib.CFM(
            transformer=f5lib.DiT(**arch, text_num_embeds=vocab_size, mel_dim=N_MELS),
            mel_spec_kwargs=dict(n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, n_mel_channels=N_MELS,
                                 target_sample_rate=SAMPLE_RATE, mel_spec_type="vocos"),
            odeint_kwargs=dict(method="euler"),
            vocab_char_map=vocab_char_map,
        )
        # DiT zero-initialises its modulation and output layers (for training): with those at zero the
        # velocity is zero and the sampler returns its noise untouched, whatever the transformer computes.
        for name, param in cfm.transformer.named_parameters():
            if not param.any():
                torch.nn.init.normal_(param, std=0.02)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return cfm.to(device=device, dtype=dtype).eval()


def build_vocoder(model: str, files: ModelFiles, *, device: str):
    from vocos import Vocos

    if files.vocoder_config is not None:
        vocoder = Vocos.from_hparams(str(files.vocoder_config))
        vocoder.load_state_dict(torch.load(files.vocoder_weights, map_location="cpu", weights_only=True))
        return vocoder.eval().to(device)
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    size = TINY_VOCOS if model == TINY_RANDOM else VOCOS_MEL_24KHZ
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        vocoder = Vocos(
            feature_extractor=MelSpectrogramFeatures(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH,
                                                     n_mels=N_MELS, padding="center"),
            backbone=VocosBackbone(input_channels=N_MELS, **size),
            head=ISTFTHead(dim=size["dim"], n_fft=N_FFT, hop_length=HOP_LENGTH, padding="same"),
        )
    return vocoder.eval().to(device)
