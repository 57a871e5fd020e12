"""Rotary position embedding: x-transformers' ``RotaryEmbedding`` as F5-TTS's DiT uses it, and the rotation.

F5-TTS builds ``RotaryEmbedding(dim_head)`` (no xpos, no interpolation) and rotates q and k with
``apply_rotary_pos_emb``, whose ``rotate_half`` pairs *neighbouring* channels (0 with 1, 2 with 3, ...),
each pair turned by one angle (``forward_from_seq_len`` repeats every angle twice). A pair of channels
is a complex number, so the rotation here is one complex multiplication by unit numbers (``angles``).

The angles are computed in ``inv_freq``'s dtype, as F5-TTS computes them: its model is cast to fp16 on
CUDA, buffer included, so positions past 2048 round as fp16 rounds them, and the same checkpoint gives
the same audio here.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RotaryEmbedding", "rotate", "rotate_heads"]


class RotaryEmbedding(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        # Persistent, as in x-transformers: F5-TTS's checkpoints carry ``rotary_embed.inv_freq``. Computed on
        # the CPU even when the model is built on the meta device (see ``layers``), where a checkpoint replaces it.
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2, device="cpu").float() / dim)))

    def forward_from_seq_len(self, seq_len: int) -> tuple[torch.Tensor, float]:
        """x-transformers' ``(freqs, scale)``: freqs (1, seq_len, dim), each angle repeated for its pair."""
        freqs = self._freqs(seq_len)
        return torch.stack((freqs, freqs), dim=-1).flatten(-2)[None], 1.0

    def angles(self, seq_len: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The angles of ``seq_len`` positions as unit complex numbers, (seq_len, dim / 2).

        complex32 for fp16 activations, so the rotation needs no fp32 copy of q and k.
        """
        freqs = self._freqs(seq_len).float()
        rope = torch.polar(torch.ones_like(freqs), freqs)
        return rope.to(torch.complex32) if dtype == torch.float16 else rope

    def _freqs(self, seq_len: int) -> torch.Tensor:
        t = torch.arange(seq_len, device=self.inv_freq.device)
        return torch.einsum("i,j->ij", t.type_as(self.inv_freq), self.inv_freq)


def rotate(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """x (batch, seq, ..., dim_head) turned by ``rope`` (seq, dim_head / 2): rotate_half's pairs as complex numbers."""
    pairs = torch.view_as_complex((x if rope.dtype == torch.complex32 else x.float()).reshape(*x.shape[:-1], -1, 2))
    rope = rope.view(rope.shape[0], *([1] * (x.ndim - 3)), rope.shape[1])
    return torch.view_as_real(pairs * rope).flatten(-2).to(x.dtype)


def rotate_heads(qk: torch.Tensor, rope: torch.Tensor, rotated_heads: int | None = None) -> torch.Tensor:
    """q and k, (batch, seq, 2, heads, dim_head), turned by ``rope``: every head, or the first ``rotated_heads``
    (F5TTS_Base's ``pe_attn_head``)."""
    if rotated_heads is None:
        return rotate(qk, rope)
    return torch.cat((rotate(qk[:, :, :, :rotated_heads], rope), qk[:, :, :, rotated_heads:]), dim=3)
