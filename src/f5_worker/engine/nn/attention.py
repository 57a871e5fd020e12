"""F5-TTS's self-attention (``Attention`` with its ``AttnProcessor``), computed in fewer kernels.

F5-TTS projects q, k and v with three matmuls and rotates q and k with x-transformers' rotary
embedding (about ten elementwise kernels per tensor per layer). Here one matmul projects all three
(``fuse_qkv``: the three weights become views of one, so the state dict keeps F5-TTS's ``to_q``,
``to_k``, ``to_v`` and no memory is doubled), and q and k turn together as one complex multiplication.

Two switches, which the sampler sets per batch: ``backend`` "torch" (SDPA), "cudnn_ragged" (SDPA through
cuDNN's variable-length path when unmasked, ``ragged_attention``) or "flash_attn" (``flash_attn_func``;
``flash_attn_varlen_func`` on unpadded rows when masked), and ``masked``
(whether a given mask restricts attention; padded rows are zeroed on output either way, as F5-TTS
does). flash_attn is imported inside the call, never at import: the bootstrap activates a verified
install (or none) before the first batch. ``tests/engine/test_attention.py`` holds this equal to
F5-TTS's processor.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ...log import event, get_logger

from .layers import Linear, StackedLinears
from .rotary import rotate_heads

__all__ = ["Attention", "BACKENDS", "REFUSED", "ragged_attention"]

BACKENDS = ("torch", "cudnn_ragged", "flash_attn")
log = get_logger("engine.attention")


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
        elif self.backend == "cudnn_ragged" and attn_mask is None:
            out = ragged_attention(q, k, v)
        else:
            if attn_mask is not None:
                attn_mask = attn_mask[:, None, None, :].expand(batch, self.heads, seq_len, seq_len)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=attn_mask).transpose(1, 2)
        out = self.to_out[0](out.reshape(batch, seq_len, -1).to(x.dtype))
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        return out


def ragged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked attention of (batch, frames, heads, dim) q, k, v through cuDNN's variable-length path, as
    PyTorch's nested tensors call it: the sequences as rows (batch * frames, heads, dim) and where each starts.
    Its keys end at each sequence's length; cuDNN's dense path ran lengths between multiples of 128 ~25% slower
    per FLOP on the H200 (BENCHMARKS.md, "Where a batched step's time goes"). The rows are packed copies:
    PyTorch places each sequence at start * heads * dim (``run_cudnn_SDP_fprop_nestedtensor``), so the
    projection's interleaved views (rows 3 * heads * dim apart) would be read at the wrong places. CUDA only;
    the engine measures it against the dense path, and checks it samples the same, before using it."""
    batch, frames, heads, dim = q.shape
    if (batch, frames) not in REFUSED:
        starts = torch.arange(0, (batch + 1) * frames, frames, device=q.device, dtype=torch.int32)
        rows = [t.reshape(batch * frames, heads, dim).contiguous() for t in (q, k, v)]
        try:
            return _cudnn_varlen(*rows, starts, frames).view(batch, frames, heads, dim)
        except RuntimeError as exc:  # a shape cuDNN has no plan for (checked at other shapes): the dense path
            REFUSED[batch, frames] = f"{type(exc).__name__}: {str(exc)[:200]}"
            event(log, "variable-length attention refused a shape; dense SDPA for it", phase="engine.attention",
                  batch=batch, frames=frames, error=str(exc)[:300], level=logging.WARNING)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


REFUSED: dict[tuple[int, int], str] = {}  # (sequences, frames) cuDNN's variable-length path failed on: why


def _cudnn_varlen(q_rows, k_rows, v_rows, starts, longest: int) -> torch.Tensor:
    return torch.ops.aten._cudnn_attention_forward(q_rows, k_rows, v_rows, None, starts, starts, longest, longest,
                                                   False, 0.0, False, False)[0]


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
