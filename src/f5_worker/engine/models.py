"""Build F5-TTS and Vocos with the worker's own modules: from checkpoints, or with seeded random weights.

With checkpoint files (the model cache's ``ModelFiles``), the modules are built on the meta device,
uninitialised (``nn.layers``: no random values drawn, no compiler stack imported), and take the file's
tensors as they are read, on the serving device in the serving dtype (float16 on a CUDA GPU, float32
elsewhere: F5-TTS's choice; the vocoder stays float32, as F5-TTS keeps it).

Without checkpoint files the same architectures get seeded random weights: ``tiny-random`` at a toy
size (tests and offline smoke runs), or a real size such as ``F5TTS_v1_Base`` for speed benchmarks
(speed does not depend on weight values). The whole synthesis path runs; the audio is noise, and is
labelled so. Layers the DiT initialises to zero get small random values, so the transformer's output
reaches the audio (tests can see it). The modules are created in F5-TTS's and vocos' order with their
initialisations, so these are the weights F5-TTS's own modules get under the same seed.

The architectures are F5-TTS's ``configs/<model>.yaml`` ``model.arch`` values, restated (``ARCHS``;
``tests/engine/test_checkpoint.py`` compares them with F5-TTS's files). F5-TTS's E2TTS_Base is no DiT
(its backbone is a UNetT) and is not served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..settings import TINY_RANDOM
from .checkpoint import f5_tts_state_dict, load_into, read_tensors
from .nn import F5TTS, DiT, DiTArch, MelSpec, Vocos, VocosConfig
from .nn.layers import uninitialised
from .text import VOCAB, load_vocab

__all__ = ["ModelFiles", "TINY_RANDOM", "ARCHS", "model_arch", "serving_dtype", "build_model", "build_vocoder",
           "load_f5tts", "load_vocos", "N_MELS", "SAMPLE_RATE", "HOP_LENGTH", "N_FFT", "TINY_VOCOS", "VOCOS_MEL_24KHZ",
           "TINY_SEED"]

SAMPLE_RATE = 24_000
N_MELS = 100
HOP_LENGTH = 256
N_FFT = 1024
ARCHS: dict[str, DiTArch] = {
    "F5TTS_v1_Base": DiTArch(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, conv_layers=4,
                             text_mask_padding=True, pe_attn_head=None),
    "F5TTS_Base": DiTArch(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, conv_layers=4,
                          text_mask_padding=False, pe_attn_head=1),
    # Small enough for a 2-core CI machine, with every block F5TTS_v1_Base has (conv text embedding,
    # several heads, the ODE loop): only widths and depth differ.
    TINY_RANDOM: DiTArch(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1,
                         text_mask_padding=True, pe_attn_head=None),
}
TINY_VOCOS = VocosConfig(dim=32, intermediate_dim=64, num_layers=1)
VOCOS_MEL_24KHZ = VocosConfig()  # charactr/vocos-mel-24khz's config.yaml
TINY_SEED = 0


@dataclass(frozen=True)
class ModelFiles:
    """What the model cache verified (``models.ModelsReport.paths``); None for tiny-random."""

    checkpoint: Path | None = None
    vocab: Path | None = None
    vocoder_config: Path | None = None
    vocoder_weights: Path | None = None


def model_arch(model: str) -> DiTArch:
    try:
        return ARCHS[model]
    except KeyError:
        raise ValueError(f"no architecture known for model {model!r}: one of {', '.join(ARCHS)}") from None


def serving_dtype(device: str | torch.device) -> torch.dtype:
    """float16 on a CUDA GPU of compute capability 7.0 or newer, else float32 (F5-TTS's ``load_checkpoint``)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.get_device_properties(device).major >= 7:
        return torch.float16
    return torch.float32


def build_model(model: str, files: ModelFiles, *, attn_backend: str = "torch", attn_mask_enabled: bool = False,
                device: str) -> F5TTS:
    """The model named ``model``: from ``files.checkpoint`` (and its vocab), or seeded random weights without one."""
    arch = model_arch(model)
    if files.checkpoint is not None:
        f5 = load_f5tts(arch, files.checkpoint, files.vocab, device=device)
    else:
        f5 = _random_model(arch, load_vocab(files.vocab or VOCAB)).to(device=device, dtype=serving_dtype(device))
        f5.transformer.fuse()
    f5.transformer.set_attention(attn_backend, attn_mask_enabled)
    return f5


def load_f5tts(arch: DiTArch, checkpoint: Path, vocab: Path | None = None, *, device: str) -> F5TTS:
    """An F5-TTS checkpoint (EMA weights, ``.safetensors`` or ``.pt``) as F5-TTS's ``load_model`` loads it,
    with ``vocab`` (default: F5-TTS's own), on ``device`` in the serving dtype."""
    dtype = serving_dtype(device)
    vocab_map = load_vocab(vocab or VOCAB)
    with torch.device("meta"), uninitialised():
        f5 = F5TTS(DiT(arch, text_num_embeds=len(vocab_map), mel_dim=N_MELS), vocab_map, MelSpec(n_mel_channels=N_MELS))
    tensors = read_tensors(checkpoint, device=device, dtype=dtype)
    state = f5_tts_state_dict(tensors, safetensors=Path(checkpoint).suffix == ".safetensors")
    load_into(f5, state, source=checkpoint)
    f5.transformer.init_buffers(device, dtype)
    f5.transformer.fuse()
    return f5.eval()


def _random_model(arch: DiTArch, vocab: dict[str, int]) -> F5TTS:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        dit = DiT(arch, text_num_embeds=len(vocab), mel_dim=N_MELS)
        # DiT zero-initialises its modulation and output layers (for training): with those at zero the
        # velocity is zero and the sampler returns its noise untouched, whatever the transformer computes.
        for param in dit.parameters():
            if not param.any():
                torch.nn.init.normal_(param, std=0.02)
    for param in dit.parameters():
        param.requires_grad_(False)
    return F5TTS(dit, vocab, MelSpec(n_mel_channels=N_MELS))


def build_vocoder(model: str, files: ModelFiles, *, device: str) -> Vocos:
    """The vocoder from ``files`` (vocos' config.yaml and pytorch_model.bin), or seeded random weights without them."""
    if files.vocoder_config is not None:
        return load_vocos(files.vocoder_config, files.vocoder_weights, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        vocoder = Vocos(TINY_VOCOS if model == TINY_RANDOM else VOCOS_MEL_24KHZ)
    for param in vocoder.parameters():
        param.requires_grad_(False)
    return vocoder.eval().to(device)


def load_vocos(config: Path, weights: Path, *, device: str) -> Vocos:
    """vocos' published files, as F5-TTS's ``load_vocoder`` loads them: float32 on ``device``."""
    with torch.device("meta"), uninitialised():
        vocoder = Vocos(VocosConfig.from_yaml(config))
    load_into(vocoder, read_tensors(weights, device=device, dtype=torch.float32), source=weights)
    return vocoder.eval()
