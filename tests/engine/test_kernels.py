"""The Triton kernels (``engine.nn.kernels``) against the eager modules they replace, in Triton's interpreter.

On the CPU, Triton's interpreter runs the kernels' own code (``TRITON_INTERPRET=1``, which ``conftest.py``
sets for the whole session), in float32, at sizes where the position convolution has 16
channels per group (the smallest ``tl.dot`` takes; F5-TTS's models have 64). On the GPU, the same kernels
are checked in fp16 by the engine before it uses them and by ``bench/step_profile.py``.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from f5_worker.engine.nn import DiT, DiTArch
from f5_worker.engine.nn.dit import modulate
from f5_worker.engine.nn.rotary import RotaryEmbedding, rotate
from f5_worker.engine.text import load_vocab

# The smallest DiT whose position convolution the kernel takes: 256 channels in 16 groups of 16.
ARCH = DiTArch(dim=256, depth=2, heads=4, dim_head=64, ff_mult=2, text_dim=32, conv_layers=1)


@pytest.fixture(scope="module")
def kernels():
    assert os.environ.get("TRITON_INTERPRET") == "1", "conftest.py runs the kernels in Triton's interpreter"
    from f5_worker.engine.nn import kernels

    return kernels


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def dit():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = DiT(ARCH, text_num_embeds=len(load_vocab()))
        for param in model.parameters():  # nothing left at zero: every path reaches the output
            if not param.any():
                torch.nn.init.normal_(param, std=0.05)
    model.fuse()
    return model.eval()


def test_position_convolution_equals_cudnn_layout(kernels, dit):
    conv = dit.input_embed.conv_pos_embed
    x = randn(1, 70, ARCH.dim)  # two blocks of 64 frames, the second one ragged
    with torch.inference_mode():
        expected = conv(x) + x
        dit.use_kernels(True)
        try:
            got = conv.plus_input(x)
        finally:
            dit.use_kernels(False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rotated_heads", [None, 1])  # F5TTS_v1_Base turns every head, F5TTS_Base the first
def test_rotation_in_place_equals_the_complex_product(kernels, rotated_heads):
    qkv = randn(2, 23, 3, 4, 64)
    rope = RotaryEmbedding(64).angles(23)
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    if rotated_heads is None:
        expected_q, expected_k = rotate(q, rope), rotate(k, rope)
    else:
        expected_q = torch.cat((rotate(q[:, :, :1], rope), q[:, :, 1:]), dim=2)
        expected_k = torch.cat((rotate(k[:, :, :1], rope), k[:, :, 1:]), dim=2)
    v = qkv[:, :, 2].clone()
    got = kernels.rotate_qk_(qkv, rope, rotated_heads)
    assert got is qkv
    torch.testing.assert_close(qkv[:, :, 0], expected_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(qkv[:, :, 1], expected_k, rtol=1e-5, atol=1e-5)
    assert torch.equal(qkv[:, :, 2], v)  # v untouched


@pytest.mark.parametrize("with_residual", [False, True])
def test_residual_then_modulated_norm(kernels, with_residual):
    x, y = randn(3, 17, 96, seed=1), randn(3, 17, 96, seed=2)
    gate, shift, scale = randn(96, seed=3), randn(96, seed=4), 0.3 * randn(96, seed=5)
    expected_x = torch.addcmul(x, gate, y) if with_residual else x.clone()
    expected = modulate(expected_x, shift[None, None], scale[None, None])
    got = kernels.residual_norm(x, y if with_residual else None, gate if with_residual else None, shift, scale)
    torch.testing.assert_close(x, expected_x)  # the residual stream, updated in place
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_velocity_with_kernels_equals_without(kernels, dit, masked):
    """The whole DiT: kernels where they apply (a mask keeps the cuDNN-layout convolution), same velocity."""
    vocab = len(load_vocab())
    x, cond = randn(2, 40, 100, seed=6), randn(2, 40, 100, seed=7)
    text = torch.randint(0, vocab, (2, 30), generator=torch.Generator().manual_seed(8))
    lens = torch.tensor([40, 29])
    mask = torch.arange(40)[None] < lens[:, None] if masked else None
    seq_len = lens if masked else 40
    if not masked:  # one request: the interpreter is slow, and the convolution kernel runs only here
        x, cond, text = x[:1], cond[:1], text[:1]
    dit.set_attention("torch", masked=masked)
    with torch.inference_mode():
        text_cond = dit.text_embed(text, seq_len=seq_len, drop_text=False)
        text_uncond = dit.text_embed(text, seq_len=seq_len, drop_text=True)
        time = torch.tensor(0.4)
        expected = dit(x, cond, text_cond, text_uncond, time, mask, 2.0)
        dit.use_kernels(True)
        try:
            got = dit(x, cond, text_cond, text_uncond, time, mask, 2.0)
            per_request = dit(x, cond, text_cond, text_uncond, torch.tensor([0.4] * len(x)), mask, 2.0)  # eager path
        finally:
            dit.use_kernels(False)
    assert expected.abs().mean() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(per_request, expected, rtol=1e-5, atol=1e-5)


def test_check_compares_every_kernel_with_pytorch(kernels, dit):
    report = kernels.check(dit)
    assert set(report) == {"residual_norm", "rotate_qk_", "guided_euler_", "conv_mish"} and max(report.values()) < 1e-4


def test_check_names_the_kernel_that_differs(kernels, dit, monkeypatch):
    monkeypatch.setattr(kernels, "rotate_qk_", lambda qkv, rope, rotated_heads: qkv)  # turns nothing
    with pytest.raises(kernels.KernelMismatch, match=r"^rotate_qk_ differs by .* \(tolerance 0.01\)$"):
        kernels.check(dit)


# In fp16 the kernels round where F5-TTS's fp16 model rounds: each elementwise operation there is a kernel of
# its own, which rounds its output. Computed with one rounding instead (as PyTorch's fused kernels do), the same
# values differ in the last bit for a good share of the elements, and over 32 steps that shows in the audio.

def ulps(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """How many fp16 steps apart each pair of values is (for values of one sign, as here away from zero)."""
    return (got.view(torch.int16).int() - expected.view(torch.int16).int()).abs()


def share_equal(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got == expected).float().mean())


def test_residual_norm_rounds_as_f5_tts_blocks_do(kernels):
    x, y = randn(3, 17, 96, seed=1).half(), randn(3, 17, 96, seed=2).half()
    gate, shift, scale = randn(96, seed=3).half(), randn(96, seed=4).half(), (0.3 * randn(96, seed=5)).half()
    # f5_tts/model/modules.py, DiTBlock.forward: the gated residual, then the feed-forward's modulated norm
    norm = torch.nn.LayerNorm(96, elementwise_affine=False, eps=1e-6)
    expected_x = x + gate.unsqueeze(0) * y
    expected = norm(expected_x) * (1 + scale) + shift
    one_rounding = modulate(torch.addcmul(x, gate, y), shift[None, None], scale[None, None])
    assert share_equal(one_rounding, expected) < 0.9  # what this test tells apart

    got = kernels.residual_norm(x, y, gate, shift, scale)
    assert torch.equal(x, expected_x)  # the residual stream, updated in place
    # the norm's statistics are summed in another order than PyTorch's: a rare last-bit difference
    assert share_equal(got, expected) > 0.99 and ulps(got, expected).max() <= 1


def test_guided_euler_step_rounds_as_cfm_does(kernels):
    x, out = randn(2, 70, 100, seed=11).half(), randn(4, 70, 100, seed=12).half()
    dt = torch.tensor([0.0123], dtype=torch.float16)
    # f5_tts/model/cfm.py, CFM.sample's fn: pred + (pred - null_pred) * cfg_strength; then the Euler step
    pred, null_pred = out.chunk(2)
    expected = x + dt * (pred + (pred - null_pred) * 2.0)
    one_rounding = (x.float() + dt.float() * (pred.float() + (pred.float() - null_pred.float()) * 2.0)).half()
    assert share_equal(one_rounding, expected) < 0.99  # what this test tells apart

    got = kernels.guided_euler_(x, out, dt, 2.0)
    assert got is x and torch.equal(x, expected)


def test_rotation_rounds_as_x_transformers_does(kernels):
    from support import f5_reference  # noqa: F401  (F5-TTS's rotary embedding comes from x-transformers)
    from x_transformers.x_transformers import RotaryEmbedding as F5Rotary
    from x_transformers.x_transformers import apply_rotary_pos_emb

    qkv = randn(2, 300, 3, 4, 64, seed=9).half()
    # f5_tts/model/modules.py, AttnProcessor: q and k as (batch, heads, seq, dim_head), the model cast to fp16
    freqs, xpos_scale = F5Rotary(64).half().forward_from_seq_len(300)
    expected_q = apply_rotary_pos_emb(qkv[:, :, 0].transpose(1, 2), freqs, xpos_scale).transpose(1, 2)
    expected_k = apply_rotary_pos_emb(qkv[:, :, 1].transpose(1, 2), freqs, xpos_scale).transpose(1, 2)
    rope = RotaryEmbedding(64).half().angles(300, torch.float16)
    assert share_equal(rotate(qkv[:, :, 0], rope), expected_q) < 0.9  # one rounding: what this test tells apart

    kernels.rotate_qk_(qkv, rope)
    assert torch.equal(qkv[:, :, 0], expected_q) and torch.equal(qkv[:, :, 1], expected_k)


def test_position_convolution_rounds_as_f5_tts_does(kernels, dit):
    conv = dit.input_embed.conv_pos_embed
    x = randn(1, 70, ARCH.dim, seed=10).half()

    def f5_on_cuda(rounding_after_bias: bool) -> torch.Tensor:
        # F5-TTS's ConvPositionEmbedding in fp16 as PyTorch runs it on CUDA: cuDNN accumulates in fp32 and rounds
        # its output, PyTorch adds the bias after it, Mish rounds, and the embedding is added to its input.
        h = x.transpose(1, 2)
        for layer in conv.conv1d:
            if isinstance(layer, torch.nn.Conv1d):
                h = F.conv1d(h.float(), layer.weight.half().float(), None, padding=layer.padding, groups=layer.groups)
                h = (h.half() + layer.bias.half()[:, None]) if rounding_after_bias else (h + layer.bias.half().float()[:, None]).half()
            else:
                h = F.mish(h)
        return h.transpose(1, 2) + x

    expected = f5_on_cuda(rounding_after_bias=True)
    assert share_equal(f5_on_cuda(rounding_after_bias=False), expected) < 0.95  # what this test tells apart
    weights = [kernels.conv_weight_for_kernel(layer.weight.half(), layer.groups)
               for layer in conv.conv1d if isinstance(layer, torch.nn.Conv1d)]
    first, second = (layer for layer in conv.conv1d if isinstance(layer, torch.nn.Conv1d))
    h = kernels.conv_mish(x, weights[0], first.bias.half())
    got = kernels.conv_mish(h, weights[1], second.bias.half(), residual=x)
    # the 31 taps are summed in another order than PyTorch's: rare last-bit differences, carried into layer 2
    assert share_equal(got, expected) > 0.99
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-3)
