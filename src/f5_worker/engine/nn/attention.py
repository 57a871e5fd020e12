"""F5-TTS's self-attention (``Attention`` with its ``AttnProcessor``), computed in fewer kernels.

F5-TTS projects q, k and v with three matmuls and rotates q and k with x-transformers' rotary
embedding (about ten elementwise kernels per tensor per layer). Here one matmul projects all three
(``fuse_qkv``: the three weights become views of one, so the state dict keeps F5-TTS's ``to_q``,
``to_k``, ``to_v`` and no memory is doubled), and q and k turn together as one complex multiplication.

Two switches, which the sampler sets per batch: ``backend`` "torch" (SDPA), "flash_attn"
(``flash_attn_func``; ``flash_attn_varlen_func`` on unpadded rows when masked) or "fa4"
(FlashAttention-4's ``flash_attn.cute.flash_attn_func`` when unmasked, SDPA when masked), and ``masked``
(whether a given mask restricts attention; padded rows are zeroed on output either way, as F5-TTS
does). flash_attn and FlashAttention-4 are imported inside the call, never at import: the worker
activates a verified install (or none) before a batch uses it. ``tests/engine/test_attention.py``
holds this equal to F5-TTS's processor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear, StackedLinears
from .rotary import rotate_heads

__all__ = ["Attention", "BACKENDS", "fa4_attention"]

BACKENDS = ("torch", "flash_attn", "fa4")


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, pe_attn_head: int | None = None):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.pe_attn_head = pe_attn_head  # F5TTS_Base rotates the first head only; None: all heads
        self.to_q = Linear(dim, inner)
        self.to_k = Linear(dim, inner)
        self.to_v = Linear(dim, inner)
        self.to_out = nn.ModuleList([Linear(inner, dim)])  # F5-TTS's index 1 is a dropout, no weights
        self.backend = "torch"
        self.masked = False
        self._qkv: StackedLinears | None = None
        self.kernels = None  # the ``kernels`` module, set by DiT.use_kernels: q and k turn in place

    def fuse_qkv(self) -> None:
        """Put to_q, to_k and to_v's weights into one tensor (they become views of it): one projection matmul."""
        self._qkv = StackedLinears((self.to_q, self.to_k, self.to_v))

    def _projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._qkv is not None:
            return self._qkv.weight_bias()
        return (torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight]),
                torch.cat([self.to_q.bias, self.to_k.bias, self.to_v.bias]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, rope: torch.Tensor | None = None) -> torch.Tensor:
        """x (batch, seq, dim); mask (batch, seq) True where a row is real; rope from ``RotaryEmbedding.angles``."""
        batch, seq_len, _ = x.shape
        qkv = F.linear(x, *self._projection()).view(batch, seq_len, 3, self.heads, self.dim_head)
        if rope is None:
            q, k, v = qkv.unbind(2)
        elif self.kernels is not None:
            q, k, v = self.kernels.rotate_qk_(qkv, rope, self.pe_attn_head).unbind(2)
        else:
            q, k = rotate_heads(qkv[:, :, :2], rope, self.pe_attn_head).unbind(2)
            v = qkv[:, :, 2]
        attn_mask = mask if self.masked and mask is not None else None
        if self.backend == "flash_attn":
            out = _flash(q, k, v, attn_mask)
        elif self.backend == "fa4" and attn_mask is None:
            out = fa4_attention(q, k, v)
        else:
            if attn_mask is not None:
                attn_mask = attn_mask[:, None, None, :].expand(batch, self.heads, seq_len, seq_len)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=attn_mask).transpose(1, 2)
        out = self.to_out[0](out.reshape(batch, seq_len, -1).to(x.dtype))
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        return out


def fa4_attention(q, k, v):
    """FlashAttention-4 on the projection's (batch, frames, heads, dim) views as they are (its Hopper kernels read
    them strided: bench/results/fa4-h200.json, 663 µs against cuDNN's 769 at 1424 frames and 32 sequences).
    ``f5_worker.fa4`` checks and compiles this same call before the engine uses it."""
    from flash_attn.cute import flash_attn_func

    out = flash_attn_func(q, k, v, softmax_scale=q.shape[-1] ** -0.5)
    return out[0] if isinstance(out, tuple) else out  # (out, lse) in some releases


def _flash(q, k, v, mask):
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    if mask is None:
        return flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous(), dropout_p=0.0, causal=False)
    from flash_attn.bert_padding import pad_input, unpad_input

    batch = q.shape[0]
    q, indices, cu_seqlens, max_len, _ = unpad_input(q, mask)
    k, *_ = unpad_input(k, mask)
    v, *_ = unpad_input(v, mask)
    out = flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len)
    return pad_input(out, indices, batch, mask.shape[1])
