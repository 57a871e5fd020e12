"""F5-TTS's DiT blocks for inference, in fewer kernels and fewer passes over memory.

F5-TTS's ``AttnProcessor`` runs three projections and x-transformers' rotary embedding, which
spends about ten elementwise kernels per tensor per layer (cos, sin, scale by 1.0, rotate_half
through stack and cat, ...): with 22 layers that is most of a step's ~1300 kernels. This
processor computes the same function with one fused q/k/v projection and the rotation as one
complex multiplication, then the same attention calls: SDPA, masked SDPA, ``flash_attn_func``
or ``flash_attn_varlen_func``. ``tests/engine/test_attention.py`` holds it equal to F5-TTS's.

It keeps F5-TTS's switches (``attn_backend``, ``attn_mask_enabled``), so the sampler sets them
per batch as it does on F5-TTS's processor. ``block_forward`` is ``DiTBlock.forward`` with each
modulation and gated residual as one ``addcmul`` instead of two or three elementwise passes.
In fp16 the rotation runs in complex half precision: one pass, as precise as F5-TTS's fp16 rotation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FusedAttnProcessor", "install", "rotary", "block_forward"]


def rotary(dit, seq_len: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The DiT's rotary angles for ``seq_len`` positions as unit complex numbers, (seq_len, dim_head / 2).

    The angles come from the model's own ``RotaryEmbedding`` (in its dtype, as F5-TTS computes them);
    x-transformers repeats each angle for an interleaved pair of channels, hence the ``::2``. For fp16
    activations the result is complex32, so the rotation needs no fp32 copies.
    """
    freqs, _scale = dit.rotary_embed.forward_from_seq_len(seq_len)
    rope = _unit_complex(freqs)
    return rope.to(torch.complex32) if dtype == torch.float16 else rope


def _unit_complex(freqs: torch.Tensor) -> torch.Tensor:
    angles = freqs[0, :, ::2].float()
    return torch.polar(torch.ones_like(angles), angles)


def _rotate(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """x (batch, seq, ..., dim_head) turned by ``rope`` (seq, dim_head / 2): rotate_half's pairs as complex numbers."""
    if rope.dtype != torch.complex32:
        x_c = x.float()
    else:
        x_c = x
    pairs = torch.view_as_complex(x_c.reshape(*x.shape[:-1], -1, 2))
    rope = rope.view(rope.shape[0], *([1] * (x.ndim - 3)), rope.shape[1])
    return torch.view_as_real(pairs * rope).flatten(-2).to(x.dtype)


def block_forward(block, x, t, mask=None, rope=None):
    """``DiTBlock.forward``: modulated attention, then modulated feed-forward, each with a gated residual."""
    ada = block.attn_norm
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ada.linear(ada.silu(t)).chunk(6, dim=1)
    h = torch.addcmul(shift_msa[:, None], ada.norm(x), 1 + scale_msa[:, None])
    x = torch.addcmul(x, gate_msa[:, None], block.attn(x=h, mask=mask, rope=rope))
    h = torch.addcmul(shift_mlp[:, None], block.ff_norm(x), 1 + scale_mlp[:, None])
    return torch.addcmul(x, gate_mlp[:, None], block.ff(h))


class FusedAttnProcessor:
    def __init__(self, attn, *, attn_backend: str = "torch", attn_mask_enabled: bool = False):
        self.attn_backend = attn_backend
        self.attn_mask_enabled = attn_mask_enabled
        self.qkv_weight = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]).detach()
        self.qkv_bias = torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]).detach()

    def __call__(self, attn, x: torch.Tensor, mask: torch.Tensor | None = None, rope=None) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        heads = attn.heads
        qkv = F.linear(x, self.qkv_weight, self.qkv_bias).view(batch, seq_len, 3, heads, -1)
        if rope is None:
            q, k, v = qkv.unbind(2)
        else:
            if isinstance(rope, tuple):  # called from DiT.forward, with x-transformers' (freqs, scale)
                rope = _unit_complex(rope[0])
            q, k = _rotate(qkv[:, :, :2], rope).unbind(2)  # q and k in one pass
            v = qkv[:, :, 2]
        masked = self.attn_mask_enabled and mask is not None
        if self.attn_backend == "flash_attn":
            out = _flash(q, k, v, mask if masked else None)
        else:
            attn_mask = mask[:, None, None, :].expand(batch, heads, seq_len, seq_len) if masked else None
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=attn_mask).transpose(1, 2)
        out = attn.to_out[0](out.reshape(batch, seq_len, -1).to(x.dtype))
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        return out


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


def install(dit) -> None:
    """Replace each DiT block's attention processor by the fused one (same switches, same results)."""
    for block in dit.transformer_blocks:
        old = block.attn.processor
        if isinstance(old, FusedAttnProcessor):
            continue
        if getattr(old, "pe_attn_head", None) is not None or block.attn.q_norm is not None:
            continue  # partial rotary or q/k norm: keep F5-TTS's processor
        block.attn.processor = FusedAttnProcessor(block.attn, attn_backend=old.attn_backend,
                                                  attn_mask_enabled=old.attn_mask_enabled)
