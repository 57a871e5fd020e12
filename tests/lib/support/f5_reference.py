"""F5-TTS's and vocos' own modules: the reference the worker's modules are held equal to (tests only).

``f5_tts.model``'s ``__init__`` imports F5-TTS's trainer (wandb, accelerate, datasets: none installed,
f5-tts comes with --no-deps), so the package is registered at its real path without running it; the
inference modules then import as usual. Importing this module imports F5-TTS, x-transformers and vocos.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch


def _register_model_package() -> None:
    if "f5_tts.model" in sys.modules:
        return
    spec = importlib.util.find_spec("f5_tts")
    package = types.ModuleType("f5_tts.model")
    package.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "model")]
    package.__package__ = "f5_tts.model"
    sys.modules["f5_tts.model"] = package


_register_model_package()

from f5_tts.model import modules  # noqa: E402
from f5_tts.model import utils as model_utils  # noqa: E402
from f5_tts.model.backbones.dit import DiT  # noqa: E402
from f5_tts.model.cfm import CFM  # noqa: E402

sys.modules["f5_tts.model"].CFM = CFM  # utils_infer does `from f5_tts.model import CFM`
sys.modules["f5_tts.model"].DiT = DiT

from f5_tts.infer import utils_infer  # noqa: E402

__all__ = ["CFM", "DiT", "modules", "model_utils", "utils_infer", "f5_cfm", "f5_vocos", "cfm_like", "vocos_like",
           "write_f5_checkpoint", "write_vocos", "randomize_zeros", "F5_VOCAB"]

F5_VOCAB = Path(next(iter(importlib.util.find_spec("f5_tts").submodule_search_locations))) / "infer/examples/vocab.txt"
MEL_KWARGS = dict(n_fft=1024, hop_length=256, win_length=1024, n_mel_channels=100, target_sample_rate=24_000,
                  mel_spec_type="vocos")


def randomize_zeros(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every all-zero parameter (F5-TTS's zero-initialised modulations and output, zero biases) random
    values: a layer left at zero would hide any mistake in how it is loaded or used."""
    with torch.no_grad():
        for param in module.parameters():
            if not param.any():
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))


def f5_cfm(arch, vocab_char_map: dict[str, int], *, seed: int = 0, attn_mask_enabled: bool = False) -> CFM:
    """F5-TTS's ``CFM(DiT)`` of ``arch`` (``nn.DiTArch``) with seeded random weights, no parameter left at zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfm = CFM(transformer=DiT(**arch.f5_tts_kwargs(), text_num_embeds=len(vocab_char_map), mel_dim=100,
                                  attn_mask_enabled=attn_mask_enabled),
                  mel_spec_kwargs=MEL_KWARGS, vocab_char_map=vocab_char_map)
    randomize_zeros(cfm, generator)
    return cfm.eval()


def cfm_like(model, *, attn_mask_enabled: bool = False) -> CFM:
    """F5-TTS's ``CFM`` holding the weights of the worker's ``model`` (``nn.F5TTS``): their state dicts are one."""
    cfm = CFM(transformer=DiT(**model.transformer.arch.f5_tts_kwargs(), text_num_embeds=len(model.vocab_char_map),
                              mel_dim=100, attn_mask_enabled=attn_mask_enabled),
              mel_spec_kwargs=MEL_KWARGS, vocab_char_map=model.vocab_char_map)
    cfm.load_state_dict(model.state_dict())
    param = next(model.parameters())
    return cfm.to(device=param.device, dtype=param.dtype).eval()


def f5_vocos(config, *, seed: int = 0):
    """vocos' own ``Vocos`` for ``config`` (``nn.VocosConfig``), seeded, no parameter left at zero."""
    from vocos import Vocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vocoder = Vocos(
            feature_extractor=MelSpectrogramFeatures(sample_rate=config.sample_rate, n_fft=config.n_fft,
                                                     hop_length=config.hop_length, n_mels=config.n_mels,
                                                     padding=config.padding),
            backbone=VocosBackbone(input_channels=config.n_mels, dim=config.dim,
                                   intermediate_dim=config.intermediate_dim, num_layers=config.num_layers),
            head=ISTFTHead(dim=config.dim, n_fft=config.head_n_fft, hop_length=config.head_hop_length,
                           padding=config.head_padding),
        )
    randomize_zeros(vocoder, torch.Generator().manual_seed(seed))
    return vocoder.eval()


def vocos_like(vocoder):
    """vocos' ``Vocos`` holding the weights of the worker's vocoder."""
    reference = f5_vocos(vocoder.config)
    reference.load_state_dict(vocoder.state_dict())
    return reference.to(next(vocoder.parameters()).device)


def write_f5_checkpoint(cfm: CFM, path: Path, *, ema: bool = True) -> Path:
    """``cfm``'s weights in F5-TTS's formats: ``.safetensors`` as published (the EMA model's keys), or a
    training ``.pt`` (EMA: with ema_pytorch's ``initted`` and ``step`` and an old version's mel buffers)."""
    state = {key: value.detach().clone().contiguous() for key, value in cfm.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({f"ema_model.{key}": value for key, value in state.items()}, str(path))
    elif ema:
        ema_state = {"initted": torch.tensor(True), "step": torch.tensor(1250000)}
        ema_state |= {f"ema_model.{key}": value for key, value in state.items()}
        ema_state["ema_model.mel_spec.mel_stft.mel_scale.fb"] = torch.zeros(513, 100)
        ema_state["ema_model.mel_spec.mel_stft.spectrogram.window"] = torch.hann_window(1024)
        torch.save({"ema_model_state_dict": ema_state, "update": 1250000}, path)
    else:
        torch.save({"model_state_dict": state, "update": 1250000}, path)
    return path


def write_vocos(vocoder, config, directory: Path) -> tuple[Path, Path]:
    """vocos' published layout for ``vocoder``: config.yaml as charactr/vocos-mel-24khz writes it, pytorch_model.bin."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(VOCOS_YAML.format(c=config))
    torch.save(vocoder.state_dict(), directory / "pytorch_model.bin")
    return directory / "config.yaml", directory / "pytorch_model.bin"


VOCOS_YAML = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args:
    sample_rate: {c.sample_rate}
    n_fft: {c.n_fft}
    hop_length: {c.hop_length}
    n_mels: {c.n_mels}
    padding: {c.padding}

backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: {c.n_mels}
    dim: {c.dim}
    intermediate_dim: {c.intermediate_dim}
    num_layers: {c.num_layers}

head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: {c.dim}
    n_fft: {c.head_n_fft}
    hop_length: {c.head_hop_length}
    padding: {c.head_padding}
"""
