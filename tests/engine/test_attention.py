"""The worker's attention against F5-TTS's ``Attention`` + ``AttnProcessor`` and x-transformers' rotary embedding."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch

from f5_worker.engine.nn import Attention, RotaryEmbedding, rotate
from support import f5_reference as f5

DIM, HEADS, DIM_HEAD = 48, 3, 16


def pair(pe_attn_head=None, masked=False, seed=0):
    """F5-TTS's attention with random weights, and the worker's holding the same weights."""
    torch.manual_seed(seed)
    theirs = f5.modules.Attention(f5.modules.AttnProcessor(pe_attn_head=pe_attn_head, attn_mask_enabled=masked),
                                  dim=DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    ours = Attention(DIM, heads=HEADS, dim_head=DIM_HEAD, pe_attn_head=pe_attn_head)
    ours.load_state_dict(theirs.state_dict())  # F5-TTS's keys: to_q, to_k, to_v, to_out.0
    ours.masked = masked
    return theirs, ours


def inputs(seq_len=37, lengths=(37, 20, 9)):
    x = torch.randn(len(lengths), seq_len, DIM, generator=torch.Generator().manual_seed(2))
    mask = torch.arange(seq_len)[None] < torch.tensor(lengths)[:, None]
    return x, mask


@pytest.mark.parametrize("pe_attn_head", [None, 1])  # F5TTS_v1_Base rotates every head, F5TTS_Base the first
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_attention_equals_f5_tts_processor(pe_attn_head, masked, fused):
    theirs, ours = pair(pe_attn_head, masked)
    if fused:
        ours.fuse_qkv()
    x, mask = inputs()
    rotary = RotaryEmbedding(DIM_HEAD)
    with torch.inference_mode():
        expected = theirs(x, mask=mask, rope=rotary.forward_from_seq_len(37))
        got = ours(x, mask=mask, rope=rotary.angles(37))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not (got[2, 9:]).any()  # padded rows are zero, masked attention or not


def test_unmasked_attention_ignores_the_mask_but_zeroes_padded_rows():
    _theirs, ours = pair(masked=False)
    x, mask = inputs()
    rope = RotaryEmbedding(DIM_HEAD).angles(37)
    with torch.inference_mode():
        free = ours(x, mask=mask, rope=rope)
        ours.masked = True
        restricted = ours(x, mask=mask, rope=rope)
    torch.testing.assert_close(free[0], restricted[0])  # the full-length row sees the same keys either way
    assert not torch.allclose(free[1, :20], restricted[1, :20])  # a short row sees fewer keys when masked


def test_fused_projection_keeps_f5_tts_keys_in_one_tensor_and_survives_a_move():
    _theirs, ours = pair()
    x, _ = inputs()
    rope = RotaryEmbedding(DIM_HEAD).angles(37)
    with torch.inference_mode():
        unfused = ours(x, rope=rope)
    ours.fuse_qkv()
    assert sorted(ours.state_dict()) == ["to_k.bias", "to_k.weight", "to_out.0.bias", "to_out.0.weight",
                                         "to_q.bias", "to_q.weight", "to_v.bias", "to_v.weight"]
    weight, _bias = ours._projection()
    assert weight.data_ptr() == ours.to_q.weight.data_ptr() and weight.shape == (3 * HEADS * DIM_HEAD, DIM)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x, rope=rope), unfused)
    ours.to(torch.float64)  # new tensors per parameter: the fused one no longer holds them
    assert ours._projection()[0].data_ptr() != ours.to_q.weight.data_ptr()
    with torch.inference_mode():
        torch.testing.assert_close(ours(x.double(), rope=rope).float(), unfused, rtol=1e-5, atol=1e-5)


def test_rotary_embedding_is_x_transformers():
    from x_transformers.x_transformers import RotaryEmbedding as XRotary
    from x_transformers.x_transformers import apply_rotary_pos_emb

    theirs, ours = XRotary(32), RotaryEmbedding(32)
    assert torch.equal(ours.inv_freq, theirs.inv_freq)
    freqs, scale = ours.forward_from_seq_len(11)
    expected_freqs, expected_scale = theirs.forward_from_seq_len(11)
    assert torch.equal(freqs, expected_freqs) and scale == expected_scale
    t = torch.randn(2, 11, 5, 32)  # (batch, seq, heads, dim_head)
    expected = apply_rotary_pos_emb(t.transpose(1, 2), expected_freqs).transpose(1, 2)
    torch.testing.assert_close(rotate(t, ours.angles(11)), expected)


def test_half_precision_rotation_matches_x_transformers_in_half():
    """The GPU path (fp16 activations, complex32 rotation, fp16 angles as F5-TTS's fp16 model computes them)."""
    from x_transformers.x_transformers import RotaryEmbedding as XRotary
    from x_transformers.x_transformers import apply_rotary_pos_emb

    theirs, ours = XRotary(32).half(), RotaryEmbedding(32).half()
    t = torch.randn(2, 3000, 2, 32).half()  # past 2048 positions, where fp16 angles round
    expected = apply_rotary_pos_emb(t.transpose(1, 2), theirs.forward_from_seq_len(3000)[0]).transpose(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
        rope = ours.angles(3000, torch.float16)
        assert rope.dtype == torch.complex32
        got = rotate(t, rope)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-3, atol=2e-3)


FLASH_CALLS: list[str] = []


def _sdpa_bshd(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                            v.transpose(1, 2)).transpose(1, 2)


def _flash_attn_func(q, k, v, dropout_p=0.0, causal=False):
    FLASH_CALLS.append("dense")
    return _sdpa_bshd(q, k, v)


def _flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k):
    FLASH_CALLS.append("varlen")
    bounds = cu_q.tolist()
    return torch.cat([_sdpa_bshd(q[a:b][None], k[a:b][None], v[a:b][None])[0] for a, b in zip(bounds, bounds[1:])])


def _unpad_input(hidden, mask):
    seqlens = mask.sum(-1, dtype=torch.int32)
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    cu = torch.nn.functional.pad(torch.cumsum(seqlens, 0, dtype=torch.int32), (1, 0))
    return hidden.flatten(0, 1)[indices], indices, cu, int(seqlens.max()), seqlens


def _pad_input(hidden, indices, batch, seqlen):
    out = torch.zeros(batch * seqlen, *hidden.shape[1:], dtype=hidden.dtype)
    out[indices] = hidden
    return out.view(batch, seqlen, *hidden.shape[1:])


@pytest.fixture
def stand_in_flash_attn(monkeypatch):
    """flash_attn's interface computed by SDPA: what the flash path hands it, and what it does with the answer."""
    flash = types.ModuleType("flash_attn")
    flash.flash_attn_func, flash.flash_attn_varlen_func = _flash_attn_func, _flash_attn_varlen_func
    padding = types.ModuleType("flash_attn.bert_padding")
    padding.unpad_input, padding.pad_input = _unpad_input, _pad_input
    monkeypatch.setitem(sys.modules, "flash_attn", flash)
    monkeypatch.setitem(sys.modules, "flash_attn.bert_padding", padding)
    FLASH_CALLS.clear()
    return FLASH_CALLS


def with_backend(backend: str, masked: bool):
    """(ours on ``backend``, F5-TTS's processor) on the same fused-projection pair, inputs and rotation; and x."""
    theirs, ours = pair(masked=masked)
    ours.fuse_qkv()
    x, mask = inputs()
    rope = RotaryEmbedding(DIM_HEAD).angles(37)
    with torch.inference_mode():
        expected = theirs(x, mask=mask, rope=RotaryEmbedding(DIM_HEAD).forward_from_seq_len(37))
        ours.backend = backend
        got = ours(x, mask=mask, rope=rope)
    return got, expected, x


@pytest.mark.parametrize("masked", [False, True])
def test_flash_attn_backend_equals_sdpa(stand_in_flash_attn, masked):
    got, expected, _x = with_backend("flash_attn", masked)
    assert stand_in_flash_attn == ["varlen" if masked else "dense"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture
def stand_in_fa4(monkeypatch):
    """FlashAttention-4's interface (``flash_attn.cute.flash_attn_func``, (out, lse) back) computed by SDPA: what
    the fa4 path hands it (the projection's (batch, frames, heads, dim) views, its scale), and what it takes back."""
    calls = []

    def flash_attn_func(q, k, v, softmax_scale=None):
        calls.append((tuple(q.shape), q.is_contiguous(), softmax_scale))
        return _sdpa_bshd(q, k, v), None

    package, cute = types.ModuleType("flash_attn"), types.ModuleType("flash_attn.cute")
    package.__path__ = []  # (a namespace package: flash-attn-4 ships flash_attn/cute/ alone)
    cute.flash_attn_func = flash_attn_func
    monkeypatch.setitem(sys.modules, "flash_attn", package)
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    return calls


@pytest.mark.parametrize("masked", [False, True])
def test_fa4_backend_equals_f5_tts_unmasked_and_leaves_masked_batches_to_sdpa(stand_in_fa4, masked):
    got, expected, x = with_backend("fa4", masked)
    assert stand_in_fa4 == ([] if masked else [((x.shape[0], 37, HEADS, DIM_HEAD), False, DIM_HEAD ** -0.5)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
