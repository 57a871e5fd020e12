#!/usr/bin/env python3
"""Can a Triton flash-attention kernel with Hopper's TMA loads (and, where Triton offers it, warp
specialisation) run 1424 keys as fast as cuDNN runs 1408? (issue 16; follows cudnn_frontend_attention.py)

    python bench/probes/triton_tma_attention.py [--json OUT]   # GPU machine: bash bench/gpu.sh probe-triton-tma

cuDNN runs lengths between multiples of 128 at ~345 TFLOP/s against ~455 at the multiples, however it is told the
length (cudnn-frontend-h200.json); attention_lengths.py's Triton kernel (pointer loads) ran 693-816 µs at 1408
frames, batch 16, against cuDNN's 563. Here the same online softmax reads q, k and v through tensor descriptors
over the projection's output as it is laid out, (sequences, frames, 3 * heads * 64), one box per block (rows
past a sequence's end come back as zeros), full key blocks unmasked and the last one masked; the output goes
out the same way. Block shapes, warps, stages and warp specialisation swept; each: µs per call (CUDA events,
median of 5 runs of 20), mean relative difference from float32 attention; cuDNN (PyTorch's call) beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, kernel_us, report  # noqa: E402

HEADS, DIM = 16, 64
LOG2E = 1.4426950408889634


@triton.jit
def _tma_attention(desc_q, desc_kv, desc_o, frames, heads, scale_log2e, FULL: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, SPECIALISE: tl.constexpr):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b, h = bh // heads, bh % heads
    q = desc_q.load([b, start_m * BLOCK_M, h * HEAD_DIM]).reshape(BLOCK_M, HEAD_DIM)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    full = FULL  # key frames in whole blocks (a constant: one compilation per length, as the engine's graphs)
    for start_n in tl.range(0, FULL, BLOCK_N, warp_specialize=SPECIALISE):
        k = desc_kv.load([b, start_n, (heads + h) * HEAD_DIM]).reshape(BLOCK_N, HEAD_DIM)
        qk = tl.dot(q, k.T) * scale_log2e
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = desc_kv.load([b, start_n, (2 * heads + h) * HEAD_DIM]).reshape(BLOCK_N, HEAD_DIM)
        acc = tl.dot(p.to(tl.float16), v, acc * alpha[:, None])
        m_i = m_new
    if full < frames:
        keys = full + tl.arange(0, BLOCK_N)
        k = desc_kv.load([b, full, (heads + h) * HEAD_DIM]).reshape(BLOCK_N, HEAD_DIM)
        qk = tl.where(keys[None, :] < frames, tl.dot(q, k.T) * scale_log2e, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = desc_kv.load([b, full, (2 * heads + h) * HEAD_DIM]).reshape(BLOCK_N, HEAD_DIM)
        acc = tl.dot(p.to(tl.float16), v, acc * alpha[:, None])
    acc = acc / l_i[:, None]
    desc_o.store([b, start_m * BLOCK_M, h * HEAD_DIM], acc.to(tl.float16).reshape(1, BLOCK_M, HEAD_DIM))


def tma_attention(block_m: int, block_n: int, warps: int, stages: int, specialise: bool):
    from triton.tools.tensor_descriptor import TensorDescriptor

    def run(qkv):
        seqs, frames, width = qkv.shape
        out = torch.empty(seqs, frames, HEADS * DIM, device=qkv.device, dtype=qkv.dtype)
        desc_q = TensorDescriptor.from_tensor(qkv, [1, block_m, DIM])
        desc_kv = TensorDescriptor.from_tensor(qkv, [1, block_n, DIM])
        desc_o = TensorDescriptor.from_tensor(out, [1, block_m, DIM])
        grid = (triton.cdiv(frames, block_m), seqs * HEADS)
        _tma_attention[grid](desc_q, desc_kv, desc_o, frames, HEADS, DIM ** -0.5 * LOG2E, FULL=frames // block_n * block_n,
                             BLOCK_M=block_m,
                             BLOCK_N=block_n, HEAD_DIM=DIM, SPECIALISE=specialise, num_warps=warps, num_stages=stages)
        return out
    return run


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lengths", default="1408,1424,1456")
    parser.add_argument("--configs", default="128x64x4x2,128x64x4x3,128x64x8x2,128x64x8x3,128x128x8x2,128x128x8x3,"
                        "64x64x4x3,64x128x4x2,128x32x4x3",
                        help="BLOCK_MxBLOCK_NxWARPSxSTAGES,...; each with and without warp specialisation")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a GPU")
    out: dict = {**environment("cuda", "F5TTS_v1_Base attention shape"), "triton": triton.__version__,
                 "batch": args.batch, "us": {}}
    seqs = 2 * args.batch
    for frames in (int(n) for n in args.lengths.split(",")):
        qkv = torch.randn(seqs, frames, 3 * HEADS * DIM, device="cuda", dtype=torch.float16)
        q, k, v = (qkv.view(seqs, frames, 3, HEADS, DIM)[:, :, i].transpose(1, 2) for i in range(3))
        exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).transpose(1, 2).reshape(seqs, frames, -1)

        def diff(result):
            return round(float((result.float() - exact).abs().mean() / exact.abs().mean()), 6)

        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            row = {"us": kernel_us(lambda: F.scaled_dot_product_attention(q, k, v))}
        out["us"][f"{frames} frames, cudnn"] = row
        print(f"{frames} frames, cudnn", row, flush=True)
        for config in filter(None, args.configs.split(",")):
            block_m, block_n, warps, stages = (int(n) for n in config.split("x"))
            for specialise in (False, True):
                key = f"{frames} frames, triton tma {config}{' ws' if specialise else ''}"
                try:
                    fn = tma_attention(block_m, block_n, warps, stages, specialise)
                    row = {"us": kernel_us(lambda: fn(qkv)), "rel_diff_vs_fp32": diff(fn(qkv))}
                except Exception as error:  # noqa: BLE001  a configuration Triton refuses is a result
                    row = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"}
                out["us"][key] = row
                print(key, row, flush=True)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
