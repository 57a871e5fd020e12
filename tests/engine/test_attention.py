"""The fused attention processor against F5-TTS's own, on one DiT block of the tiny-random model."""

from __future__ import annotations

import copy

import pytest
import torch

from f5_worker.engine import f5lib
from f5_worker.engine.attention import FusedAttnProcessor, rotary
from f5_worker.engine.models import ModelFiles, build_model


@pytest.fixture(scope="module")
def dit():
    # A model of our own: the shared tiny engine's sampler has already swapped its processors.
    return build_model("tiny-random", ModelFiles(), attn_backend="torch", attn_mask_enabled=False, device="cpu").transformer


@pytest.mark.parametrize("masked", [False, True])
def test_fused_processor_equals_f5_tts_processor(dit, masked):
    attn = dit.transformer_blocks[0].attn
    theirs = attn.processor
    assert type(theirs).__name__ == "AttnProcessor"
    ours = FusedAttnProcessor(attn, attn_backend="torch", attn_mask_enabled=masked)
    theirs = copy.copy(theirs)
    theirs.attn_mask_enabled = masked
    x = torch.randn(3, 37, attn.to_q.in_features, generator=torch.Generator().manual_seed(2))
    mask = torch.arange(37)[None] < torch.tensor([37, 20, 9])[:, None] if masked else None
    rope = dit.rotary_embed.forward_from_seq_len(37)
    with torch.inference_mode():
        expected = theirs(attn, x, mask=mask, rope=rope)
        torch.testing.assert_close(ours(attn, x, mask=mask, rope=rope), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(attn, x, mask=mask, rope=rotary(dit, 37)), expected, rtol=1e-5, atol=1e-5)


def test_rotary_is_x_transformers_rotation(dit):
    from x_transformers.x_transformers import apply_rotary_pos_emb

    t = torch.randn(2, 5, 11, 32)  # (batch, heads, seq, dim_head)
    expected = apply_rotary_pos_emb(t, dit.rotary_embed.forward_from_seq_len(11)[0])
    rope = rotary(dit, 11)
    pairs = torch.view_as_complex(t.transpose(1, 2).reshape(2, 11, 5, 16, 2).contiguous())
    ours = torch.view_as_real(pairs * rope[:, None, :]).flatten(-2).transpose(1, 2)
    torch.testing.assert_close(ours, expected)
    assert f5lib.DiT is type(dit)


def test_half_precision_rotation_matches_x_transformers_in_half(dit):
    """The GPU path (fp16 activations, complex32 rotation), run on the CPU: as close as fp16 allows."""
    import warnings

    from x_transformers.x_transformers import apply_rotary_pos_emb

    from f5_worker.engine.attention import _rotate

    t = torch.randn(2, 11, 5, 32)  # (batch, seq, heads, dim_head)
    expected = apply_rotary_pos_emb(t.transpose(1, 2), dit.rotary_embed.forward_from_seq_len(11)[0]).transpose(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
        rope = rotary(dit, 11, torch.float16)
        assert rope.dtype == torch.complex32
        ours = _rotate(t.half(), rope)
    assert ours.dtype == torch.float16
    torch.testing.assert_close(ours.float(), expected, rtol=2e-3, atol=2e-3)


def test_block_forward_equals_dit_block(dit):
    from f5_worker.engine.attention import block_forward

    block = dit.transformer_blocks[1]
    x = torch.randn(2, 23, dit.dim, generator=torch.Generator().manual_seed(3))
    t = dit.time_embed(torch.tensor([0.3, 0.7]))
    rope = dit.rotary_embed.forward_from_seq_len(23)
    with torch.inference_mode():
        torch.testing.assert_close(block_forward(block, x, t, rope=rope), block(x, t, rope=rope), rtol=1e-5, atol=1e-5)
