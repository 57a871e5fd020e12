"""Reading F5-TTS's and Vocos' published weights straight onto the serving device, in the serving dtype.

F5-TTS's ``load_checkpoint`` builds its model in float32 on the CPU, reads the whole file, then copies
it in: this reads one tensor at a time (safetensors through ``safe_open``; ``.pt`` memory-mapped) and
moves and casts each as it comes, into modules built on the meta device (no random initialisation, no
second copy). Which keys it keeps is F5-TTS's rule, restated in ``f5_tts_state_dict``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["read_tensors", "f5_tts_state_dict", "load_into", "LEGACY_MEL_KEYS"]

# Buffers of the mel transform older F5-TTS versions kept in the model (commit 305e3ea moved them out).
LEGACY_MEL_KEYS = ("mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window")


def read_tensors(path: Path, *, device: str | torch.device, dtype: torch.dtype | None = None) -> dict:
    """A checkpoint's contents with each floating tensor moved to ``device`` (and cast to ``dtype``) as it is read.

    ``.safetensors``: its flat tensor map. Anything else: ``torch.load``'s object (weights only), whose
    nested dicts of tensors are converted the same way.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: _place(f.get_tensor(key), device, dtype) for key in f.keys()}
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    return _place_all(checkpoint, device, dtype)


def _place_all(obj, device, dtype):
    if isinstance(obj, dict):
        return {key: _place_all(value, device, dtype) for key, value in obj.items()}
    return _place(obj, device, dtype) if isinstance(obj, torch.Tensor) else obj


def _place(tensor: torch.Tensor, device, dtype) -> torch.Tensor:
    if dtype is not None and tensor.is_floating_point():
        return tensor.to(device=device, dtype=dtype)
    return tensor.to(device=device)


def f5_tts_state_dict(checkpoint: dict, *, safetensors: bool, use_ema: bool = True) -> dict:
    """The model's state dict from a checkpoint's contents, as F5-TTS's ``load_checkpoint`` takes it.

    EMA (what F5-TTS publishes and loads by default): a safetensors file is the EMA state itself, a
    ``.pt`` holds it under ``ema_model_state_dict``; "ema_model." is removed from each key, the EMA's
    ``initted`` and ``step`` are dropped, and so are the legacy mel buffers. Without EMA: the file, or
    its ``model_state_dict``, as it is.
    """
    if not use_ema:
        return checkpoint if safetensors else checkpoint["model_state_dict"]
    ema = checkpoint if safetensors else checkpoint["ema_model_state_dict"]
    state = {key.replace("ema_model.", ""): value for key, value in ema.items() if key not in ("initted", "step")}
    for key in LEGACY_MEL_KEYS:
        state.pop(key, None)
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], *, source: Path) -> nn.Module:
    """``state`` as ``module``'s parameters and buffers (the tensors themselves: ``assign``), strictly.

    A key missing or left over means the file is not this architecture: the error says which and where.
    """
    expected, given = set(module.state_dict()), set(state)
    if expected != given:
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        raise ValueError(f"{source} does not fit this model: {_few(missing)} missing, {_few(unexpected)} unexpected; "
                         "is it a checkpoint of the model named (F5_WORKER_MODEL)?")
    for key, tensor in module.state_dict().items():
        if tensor.shape != state[key].shape:
            raise ValueError(f"{source}: {key} is {tuple(state[key].shape)} in the file, {tuple(tensor.shape)} in "
                             "this model; is it a checkpoint of the model named (F5_WORKER_MODEL), with its vocab.txt?")
    module.load_state_dict(state, strict=True, assign=True)
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def _few(keys: list[str]) -> str:
    return f"{len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else "none"

