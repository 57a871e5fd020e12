"""Triton kernels for what stands between the DiT's matrix products (issue 16).

A sampling step measured on the H200 (``bench/step_profile.py``, ``BENCHMARKS.md`` ``## Throughput``)
spent as much time between the matmuls and attention as in them: cuDNN runs the position embedding's
grouped convolution as one kernel per group at a fraction of the matrix rate, the rotary embedding's
complex product is a slow generic kernel, and every residual, LayerNorm and modulation reads and writes
the activations once more. Each kernel here replaces a chain of those:

- ``conv_mish``: the grouped Conv1d (as an implicit GEMM: every tap of every group is a small matrix
  product), its bias and Mish, and optionally the residual that follows, in one pass;
- ``rotate_qk_``: the rotary rotation of q and k, in place in the fused q/k/v projection's output;
- ``residual_norm``: ``x += gate * y``, then LayerNorm of the new x with the block's modulation
  (``norm(x) * (1 + scale) + shift``), one read of each input and one write of each output.

They compute in float32 and round to the activations' dtype wherever F5-TTS's fp16 model rounds (each
elementwise operation there is a kernel of its own, which rounds its output): the same rounding, for
outputs that follow F5-TTS's own, not only approximate them. They only apply where one time step
(one modulation row) serves the whole batch, which is how the sampler runs. The DiT uses them once
``DiT.use_kernels(True)`` is called: the engine does that in the background, after compiling them (a
Triton cache on the volume makes that a load on later starts) and checking them against the eager
path on the GPU. ``tests/engine/test_kernels.py`` runs them in Triton's interpreter on the CPU and
holds them equal to the eager modules, and in fp16 bit for bit to F5-TTS's operations; on the H200 the
sampler's output is as near F5-TTS's SDPA path as F5-TTS's own flash-attn path is (BENCHMARKS.md).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl

__all__ = ["conv_mish", "conv_weight_for_kernel", "rotate_qk_", "residual_norm", "guided_euler_", "check",
           "KernelMismatch", "TOLERANCE"]

# Largest relative difference (max |kernel - PyTorch| / max |PyTorch|) accepted by ``check``: fp16 rounding
# differences are ~1e-3; a wrong index or a miscompiled kernel is of the order of 1.
TOLERANCE = 1e-2


# Launch options of every kernel. No contraction of a product and a sum into one fused multiply-add: that
# rounds once where F5-TTS's separate kernels round twice (``bench/probes/rounding.py`` measures the share of
# elements bit-equal to F5-TTS's fp16 modules with and without it).
LAUNCH = {"enable_fp_fusion": False}


class KernelMismatch(RuntimeError):
    """A kernel's output differs from PyTorch's computation of the same thing on this GPU."""


@triton.jit
def _conv_mish_kernel(x_ptr, w_ptr, b_ptr, res_ptr, out_ptr, frames,
                      CHANNELS: tl.constexpr, GROUP: tl.constexpr, TAPS: tl.constexpr, BLOCK_S: tl.constexpr,
                      RESIDUAL: tl.constexpr):
    pid_s, group, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    chans = tl.arange(0, GROUP)
    base = batch * frames * CHANNELS + group * GROUP
    acc = tl.zeros((BLOCK_S, GROUP), dtype=tl.float32)
    for tap in range(TAPS):
        src = rows + tap - TAPS // 2  # zero padding of TAPS // 2 on each side
        valid = (src >= 0) & (src < frames)
        x = tl.load(x_ptr + base + src[:, None] * CHANNELS + chans[None, :], mask=valid[:, None], other=0.0)
        # weight laid out (group, tap, in, out): one (GROUP, GROUP) matrix per tap
        w = tl.load(w_ptr + ((group * TAPS + tap) * GROUP + chans[:, None]) * GROUP + chans[None, :])
        acc += tl.dot(x, w, out_dtype=tl.float32)
    # Rounded where F5-TTS's fp16 model rounds: cuDNN's output, then PyTorch's separate bias add, then Mish.
    dtype = out_ptr.dtype.element_ty
    acc = acc.to(dtype).to(tl.float32) + tl.load(b_ptr + group * GROUP + chans).to(tl.float32)[None, :]
    acc = acc.to(dtype).to(tl.float32)
    # Mish, x * tanh(softplus(x)), as a ratio of exponentials: with n = e^x, tanh(log(1 + n)) = (n² + 2n) / (n² + 2n + 2).
    # PyTorch's softplus is the identity above 20, where the ratio is 1 in float32 as well.
    n = tl.exp(tl.minimum(acc, 20.0))
    p = n * (n + 2.0)
    acc = acc * p / (p + 2.0)
    offsets = base + rows[:, None] * CHANNELS + chans[None, :]
    keep = (rows < frames)[:, None]
    if RESIDUAL:
        acc = acc.to(dtype).to(tl.float32)  # Mish's output rounds before the sum
        acc += tl.load(res_ptr + offsets, mask=keep, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=keep)


def conv_weight_for_kernel(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped Conv1d's weight (out, in / groups, taps) as ``conv_mish`` reads it: (groups, taps, in, out)."""
    out_channels, group, taps = weight.shape
    return weight.view(groups, out_channels // groups, group, taps).permute(0, 3, 2, 1).contiguous()


def conv_mish(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None = None,
              block_s: int = 128, num_warps: int = 4) -> torch.Tensor:
    """Mish(grouped_conv1d(x) + bias) [+ residual] over x (batch, frames, channels), 'same' zero padding.

    ``weight`` from ``conv_weight_for_kernel``: (groups, taps, channels / groups, channels / groups).
    """
    batch, frames, channels = x.shape
    groups, taps, group, _ = weight.shape
    assert x.is_contiguous() and groups * group == channels and taps % 2 == 1
    out = torch.empty_like(x)
    res = residual if residual is not None else x
    assert res.is_contiguous() and res.shape == x.shape
    grid = (triton.cdiv(frames, block_s), groups, batch)
    _conv_mish_kernel[grid](x, weight, bias, res, out, frames, CHANNELS=channels, GROUP=group, TAPS=taps,
                            BLOCK_S=block_s, RESIDUAL=residual is not None, num_warps=num_warps, **LAUNCH)
    return out


@triton.jit
def _rotate_kernel(qkv_ptr, rope_ptr, rows, seq_len, ROW: tl.constexpr, HEADS: tl.constexpr, DIM_HEAD: tl.constexpr,
                   ROTATED: tl.constexpr, UNITS: tl.constexpr, BLOCK_R: tl.constexpr):
    # BLOCK_R rows of qkv, each (3, heads, dim_head): the rotated heads of q and then of k are UNITS head-sized
    # units (2 * ROTATED, padded to a power of two). rope (seq, dim_head / 2, 2): cos, sin of each channel pair.
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    unit = tl.arange(0, UNITS)
    cols = (unit // ROTATED) * HEADS * DIM_HEAD + (unit % ROTATED) * DIM_HEAD  # q's heads, then k's
    offsets = r[:, None, None] * ROW + cols[None, :, None] + tl.arange(0, DIM_HEAD)[None, None, :]
    keep = (r < rows)[:, None, None] & (unit < 2 * ROTATED)[None, :, None]
    x = tl.load(qkv_ptr + offsets, mask=keep, other=0.0)
    # Channels 2p and 2p + 1 are pair p (x-transformers' rotate_half pairs neighbours): split them apart.
    even, odd = tl.split(tl.reshape(x, (BLOCK_R, UNITS, DIM_HEAD // 2, 2)))
    even, odd = even.to(tl.float32), odd.to(tl.float32)
    pair = (r % seq_len)[:, None] * (DIM_HEAD // 2) + tl.arange(0, DIM_HEAD // 2)[None, :]
    cos = tl.load(rope_ptr + pair * 2, mask=(r < rows)[:, None], other=0.0).to(tl.float32)[:, None, :]
    sin = tl.load(rope_ptr + pair * 2 + 1, mask=(r < rows)[:, None], other=0.0).to(tl.float32)[:, None, :]
    # x-transformers' t * cos + rotate_half(t) * sin in fp16: each product rounds, then their sum.
    dtype = qkv_ptr.dtype.element_ty
    new_even = ((even * cos).to(dtype).to(tl.float32) - (odd * sin).to(dtype).to(tl.float32)).to(dtype)
    new_odd = ((odd * cos).to(dtype).to(tl.float32) + (even * sin).to(dtype).to(tl.float32)).to(dtype)
    tl.store(qkv_ptr + offsets, tl.reshape(tl.join(new_even, new_odd), (BLOCK_R, UNITS, DIM_HEAD)), mask=keep)


def rotate_qk_(qkv: torch.Tensor, rope: torch.Tensor, rotated_heads: int | None = None,
               block_rows: int = 2, num_warps: int = 4) -> torch.Tensor:
    """Turn q and k of qkv (batch, seq, 3, heads, dim_head), contiguous, in place by ``rope`` (seq, dim_head / 2),
    the unit complex numbers of ``RotaryEmbedding.angles``; ``rotated_heads``: the first heads only."""
    batch, seq_len, three, heads, dim_head = qkv.shape
    assert three == 3 and qkv.is_contiguous() and rope.shape == (seq_len, dim_head // 2)
    rope_real = torch.view_as_real(rope).contiguous()
    rotated = heads if rotated_heads is None else rotated_heads
    rows = batch * seq_len
    _rotate_kernel[(triton.cdiv(rows, block_rows),)](
        qkv, rope_real, rows, seq_len, ROW=3 * heads * dim_head, HEADS=heads, DIM_HEAD=dim_head, ROTATED=rotated,
        UNITS=triton.next_power_of_2(2 * rotated), BLOCK_R=block_rows, num_warps=num_warps, **LAUNCH)
    return qkv


@triton.jit
def _residual_norm_kernel(x_ptr, y_ptr, gate_ptr, shift_ptr, scale_ptr, out_ptr, eps,
                          DIM: tl.constexpr, BLOCK: tl.constexpr, RESIDUAL: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    inside = cols < DIM
    x = tl.load(x_ptr + row * DIM + cols, mask=inside, other=0.0).to(tl.float32)
    # Rounded where F5-TTS's fp16 blocks round: x + round(gate * y); round(norm(x)) * round(1 + scale), + shift.
    dtype = x_ptr.dtype.element_ty
    if RESIDUAL:
        gate = tl.load(gate_ptr + cols, mask=inside, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + row * DIM + cols, mask=inside, other=0.0).to(tl.float32)
        x = (x + (gate * y).to(dtype).to(tl.float32)).to(dtype)
        tl.store(x_ptr + row * DIM + cols, x, mask=inside)
        x = x.to(tl.float32)
    mean = tl.sum(x, axis=0) / DIM
    centred = tl.where(inside, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / DIM + eps)
    scale = (1.0 + tl.load(scale_ptr + cols, mask=inside, other=0.0).to(tl.float32)).to(dtype).to(tl.float32)
    shift = tl.load(shift_ptr + cols, mask=inside, other=0.0).to(tl.float32)
    scaled = ((centred * rstd).to(dtype).to(tl.float32) * scale).to(dtype).to(tl.float32)
    tl.store(out_ptr + row * DIM + cols, (scaled + shift).to(dtype), mask=inside)


def residual_norm(x: torch.Tensor, y: torch.Tensor | None, gate: torch.Tensor | None, shift: torch.Tensor,
                  scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x += gate * y`` in place (skipped when y is None), then ``layer_norm(x) * (1 + scale) + shift``.

    x, y (..., dim) contiguous; gate, shift, scale (dim,): one modulation for every row.
    """
    dim = x.shape[-1]
    assert x.is_contiguous() and shift.numel() == dim and scale.numel() == dim
    if y is not None:
        assert y.is_contiguous() and y.shape == x.shape and gate is not None and gate.numel() == dim
    out = torch.empty_like(x)
    rows = x.numel() // dim
    _residual_norm_kernel[(rows,)](x, y if y is not None else x, gate if gate is not None else shift,
                                   shift.contiguous(), scale.contiguous(), out, eps, DIM=dim,
                                   BLOCK=triton.next_power_of_2(dim), RESIDUAL=y is not None, **LAUNCH)
    return out


@triton.jit
def _guided_euler_kernel(x_ptr, out_ptr, dt_ptr, cfg_strength, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    dtype = x_ptr.dtype.element_ty
    pred = tl.load(out_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    null = tl.load(out_ptr + n + offsets, mask=inside, other=0.0).to(tl.float32)
    # Rounded where CFM's fp16 operations round: pred + round(round(pred - null) * cfg), then x + round(dt * v).
    guided = ((pred - null).to(dtype).to(tl.float32) * cfg_strength).to(dtype).to(tl.float32)
    v = (pred + guided).to(dtype).to(tl.float32)
    dt = tl.load(dt_ptr).to(tl.float32)
    x = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    tl.store(x_ptr + offsets, (x + (dt * v).to(dtype).to(tl.float32)).to(dtype), mask=inside)


def guided_euler_(x: torch.Tensor, out: torch.Tensor, dt: torch.Tensor, cfg_strength: float) -> torch.Tensor:
    """One Euler step with classifier-free guidance, in place: ``x += dt * (pred + (pred - null) * cfg_strength)``,
    where pred and null are the two halves of ``out`` (2 batch, ...), the flow of the conditional and the
    unconditional rows; x (batch, ...); dt (1,) on the device. One pass instead of five kernels per step."""
    n = x.numel()
    assert x.is_contiguous() and out.is_contiguous() and out.numel() == 2 * n and dt.numel() == 1
    block = 1024
    _guided_euler_kernel[(triton.cdiv(n, block),)](x, out, dt, float(cfg_strength), n, BLOCK=block, **LAUNCH)
    return x


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1e-12))


def check(dit, tolerance: float = TOLERANCE) -> dict[str, float]:
    """Compile every kernel ``dit`` would call and compare each with PyTorch's own computation, on dit's device.

    Runs on a stream of its own and changes nothing in ``dit`` (another thread may be serving with it).
    Both integer specialisations Triton makes of a length (a multiple of 16 or not) are compiled. Returns
    each kernel's largest relative difference; raises ``KernelMismatch`` above ``tolerance``.
    """
    from .dit import conv_position_embedding, modulate
    from .rotary import rotate_heads

    param = next(dit.parameters())
    device, dtype = param.device, param.dtype
    generator = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    attn = dit.transformer_blocks[0].attn
    conv = dit.input_embed.conv_pos_embed
    layers = [layer for layer in conv.conv1d if isinstance(layer, torch.nn.Conv1d)]
    group = layers[0].in_channels // layers[0].groups
    worst: dict[str, float] = {}

    def note(name: str, got: torch.Tensor, expected: torch.Tensor) -> None:
        worst[name] = max(worst.get(name, 0.0), _relative(got, expected))

    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else nullcontext()):
        for frames in (16, 24):
            x, y = randn(2, frames, dit.dim), randn(2, frames, dit.dim)
            gate, shift, scale = randn(dit.dim), randn(dit.dim), 0.3 * randn(dit.dim)
            expected_x = torch.addcmul(x, gate, y)
            got = residual_norm(x, y, gate, shift, scale)
            note("residual_norm", got, modulate(expected_x, shift[None, None], scale[None, None]))
            note("residual_norm", residual_norm(x, None, None, shift, scale),
                 modulate(x, shift[None, None], scale[None, None]))

            qkv = randn(2, frames, 3, attn.heads, attn.dim_head)
            rope = dit.rotary_embed.angles(frames, dtype)
            expected = rotate_heads(qkv[:, :, :2], rope, attn.pe_attn_head)
            note("rotate_qk_", rotate_qk_(qkv, rope, attn.pe_attn_head)[:, :, :2], expected)

            x, out, dt = randn(2, frames, 100), randn(4, frames, 100), randn(1)
            expected = x + dt * (out[:2] + (out[:2] - out[2:]) * 2.0)
            note("guided_euler_", guided_euler_(x, out, dt, 2.0), expected)

            if group >= 16:
                h = randn(1, frames, dit.dim)
                weights = [conv_weight_for_kernel(layer.weight, layer.groups) for layer in layers]
                got = conv_mish(conv_mish(h, weights[0], layers[0].bias), weights[1], layers[1].bias, residual=h)
                note("conv_mish", got, conv_position_embedding(conv, h) + h)
    if stream is not None:
        stream.synchronize()
    bad = {name: diff for name, diff in worst.items() if not diff <= tolerance}
    if bad:
        raise KernelMismatch(", ".join(f"{name} differs by {diff:.3g} (tolerance {tolerance:g})"
                                       for name, diff in bad.items()))
    return worst
