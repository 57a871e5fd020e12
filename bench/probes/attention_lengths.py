#!/usr/bin/env python3
"""Why does a step just past a multiple of 128 frames cost 5-8% more, and can the attention avoid it? (issue 16)

    python bench/probes/attention_lengths.py [--json OUT]   # GPU machine, repo root: bash bench/gpu.sh probe-attention

probe-lengths found the step's time jumping at every multiple of 128 frames (1408 -> 1410: 3.38 -> 3.56 ms at
batch 1, 24.7 -> 26.7 at 8, 49.6 -> 53.5 at 16) and cuDNN's attention taking 22-33% longer at 1424-1456 frames
than at 1408. Here the attention alone, F5TTS_v1_Base's shape (16 heads of 64, q/k/v as views of one
projection), fp16, batch 1 and 16 (2 and 32 sequences with guidance): cuDNN at several lengths; queries and
keys of different lengths (which side costs); the keys split at the last multiple of 128 and the two parts merged
by their log-sum-exp; keys padded to a multiple of 128 under a mask; cuDNN's variable-length path; keys padded to a
multiple of 128 with one more head dimension sending the padding to -inf (no mask); PyTorch's flash and
memory-efficient kernels; and a Triton flash-attention kernel that masks only the last tile of keys (``--triton``: its block
sizes swept). Each: µs per call (median of 5 runs of 20 calls) and mean relative difference from float32
attention.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, kernel_us, report  # noqa: E402

HEADS, DIM = 16, 64
LOG2E = 1.4426950408889634

try:
    import triton
    import triton.language as tl
except ImportError:  # the probe's other variants run without it
    triton = None

if triton is not None:
    @triton.jit
    def _attention_kernel(Q, K, V, O, sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, heads, frames,
                          full: tl.constexpr, scale_log2e, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
        """One (batch, head, block of queries): online softmax over the keys, full blocks unmasked, the last
        (partial) block masked (``full``: the keys in whole blocks); fp32 accumulation, output in O's dtype."""
        start_m = tl.program_id(0)
        bh = tl.program_id(1)
        b, h = bh // heads, bh % heads
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], mask=offs_m[:, None] < frames,
                    other=0.0)
        k_base = K + b * skb + h * skh
        v_base = V + b * svb + h * svh
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        for start_n in range(0, full, BLOCK_N):
            k = tl.load(k_base + (start_n + offs_n)[None, :] * skn + offs_d[:, None])
            qk = tl.dot(q, k) * scale_log2e
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.math.exp2(qk - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_base + (start_n + offs_n)[:, None] * svn + offs_d[None, :])
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
            m_i = m_new
        if full < frames:
            keys = full + offs_n
            k = tl.load(k_base + keys[None, :] * skn + offs_d[:, None], mask=keys[None, :] < frames, other=0.0)
            qk = tl.where(keys[None, :] < frames, tl.dot(q, k) * scale_log2e, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.math.exp2(qk - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_base + keys[:, None] * svn + offs_d[None, :], mask=keys[:, None] < frames, other=0.0)
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        acc = acc / l_i[:, None]
        tl.store(O + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :], acc.to(O.dtype.element_ty),
                 mask=offs_m[:, None] < frames)


def triton_attention(block_m: int, block_n: int, warps: int, stages: int):
    """q, k, v (batch, heads, frames, dim) strided views -> out (batch, heads, frames, dim), laid out as
    (batch, frames, heads, dim) like cuDNN's (the model reshapes it to (batch, frames, heads * dim))."""
    def run(q, k, v):
        batch, heads, frames, dim = q.shape
        out = torch.empty(batch, frames, heads, dim, device=q.device, dtype=q.dtype).transpose(1, 2)
        grid = (triton.cdiv(frames, block_m), batch * heads)
        _attention_kernel[grid](q, k, v, out, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
                                heads, frames, frames // block_n * block_n, dim ** -0.5 * LOG2E, BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=dim,
                                num_warps=warps, num_stages=stages)
        return out
    return run


def projections(seqs: int, frames: int, kv_frames: int | None = None):
    """q, k, v as the model has them: (seqs, heads, frames, dim) views of a (seqs, frames, 3 * heads * dim) output."""
    qkv = torch.randn(seqs, frames, 3, HEADS, DIM, device="cuda", dtype=torch.float16)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    if kv_frames is not None and kv_frames != frames:
        kv = torch.randn(seqs, kv_frames, 2, HEADS, DIM, device="cuda", dtype=torch.float16)
        k, v = (kv[:, :, i].transpose(1, 2) for i in range(2))
    return q, k, v


def cudnn(q, k, v, bias=None):
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def cudnn_with_lse(q, k, v):
    out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, False, False)
    return out[0], out[1]


def split_keys(q, k, v):
    """Keys up to the last multiple of 128, then the rest, merged by each part's log-sum-exp."""
    cut = k.shape[2] // 128 * 128
    if cut in (0, k.shape[2]):
        return cudnn(q, k, v)
    o1, l1 = cudnn_with_lse(q, k[:, :, :cut], v[:, :, :cut])
    o2, l2 = cudnn_with_lse(q, k[:, :, cut:], v[:, :, cut:])
    l1, l2 = l1.float().reshape(*o1.shape[:3], 1), l2.float().reshape(*o2.shape[:3], 1)
    top = torch.maximum(l1, l2)
    w1, w2 = torch.exp(l1 - top), torch.exp(l2 - top)
    return ((o1.float() * w1 + o2.float() * w2) / (w1 + w2)).to(q.dtype)


def padded_keys(q, k, v):
    """Keys and values padded to a multiple of 128, the padding masked out by an additive bias."""
    frames = k.shape[2]
    padded = -(-frames // 128) * 128
    if padded == frames:
        return cudnn(q, k, v)
    k = F.pad(k, (0, 0, 0, padded - frames))
    v = F.pad(v, (0, 0, 0, padded - frames))
    bias = torch.zeros(1, 1, 1, padded, device="cuda", dtype=q.dtype)
    bias[..., frames:] = float("-inf")
    return cudnn(q, k, v, bias.expand(q.shape[0], q.shape[1], q.shape[2], padded))


def ragged_cudnn(q, k, v):
    """cuDNN's variable-length path as PyTorch's nested tensors call it, on (batch, heads, frames, dim) tensors:
    the sequences as packed rows (batch * frames, heads, dim; PyTorch places each at start * heads * dim, so
    interleaved views would be misread) and where each starts. On packed inputs the copies are no-ops: the call
    alone. (On the H200, bench/results/attention-lengths-h200.json: 52-81 ms a call, PyTorch building cuDNN's
    graph at every call, and no CUDA-graph capture of it: the engine had it as an SDPA backend for a session and
    dropped it.)"""
    batch, heads, frames, dim = q.shape
    starts = torch.arange(0, (batch + 1) * frames, frames, device=q.device, dtype=torch.int32)
    rows = [t.transpose(1, 2).reshape(batch * frames, heads, dim).contiguous() for t in (q, k, v)]
    out = torch.ops.aten._cudnn_attention_forward(*rows, None, starts, starts, frames, frames,
                                                  False, 0.0, False, False)[0]
    return out.view(batch, frames, heads, dim).transpose(1, 2)


def packed(q, k, v):
    """q, k, v each copied into a packed (batch, frames, heads, dim) tensor, seen as (batch, heads, frames, dim)."""
    return tuple(t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))


def extra_dimension(q, k, v):
    """(q', k', v', head dim) for the padded-keys trick: one more dimension per head (72 = 64 + 8, cuDNN's head
    dims go by 8) that is 1 in every query and 0 in every real key, and keys and values padded to a multiple of
    128 frames whose extra dimension is -60000: a padded key's logit is -60000 / 8, its weight exactly 0 in fp32,
    and real keys' logits are unchanged. In a model the q/k/v projection would write these (rows of zeros and a
    bias of 1 in its weights); here they are built once, outside the timing."""
    batch, heads, frames, dim = q.shape
    padded = -(-frames // 128) * 128
    extra = 8
    q2 = torch.zeros(batch, frames, heads, dim + extra, device=q.device, dtype=q.dtype)
    q2[..., :dim] = q.transpose(1, 2)
    q2[..., dim] = 1.0
    k2 = torch.zeros(batch, padded, heads, dim + extra, device=q.device, dtype=q.dtype)
    v2 = torch.zeros_like(k2)
    k2[:, :frames, :, :dim] = k.transpose(1, 2)
    k2[:, frames:, :, dim] = -60000.0
    v2[:, :frames, :, :dim] = v.transpose(1, 2)
    return q2.transpose(1, 2), k2.transpose(1, 2), v2.transpose(1, 2), dim


def backend(kind):
    def run(q, k, v):
        with sdpa_kernel(kind):
            return F.scaled_dot_product_attention(q, k, v)
    return run


def rel_diff(out, q, k, v) -> float:
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    return float((out.float() - exact).abs().mean() / exact.abs().mean())


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--triton", default="128x64x4x3,128x64x8x3,128x128x8x3,64x64x4x3,"
                        "128x32x4x4", help="Triton block sizes to try, BLOCK_MxBLOCK_NxWARPSxSTAGES,... ('' for none)")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--lengths", default="1408,1410,1424,1456,1536")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a GPU: the attention kernels measured here are CUDA's")
    out: dict = {**environment("cuda", "F5TTS_v1_Base attention shape"), "us_per_call": {}}
    variants = {"cudnn": cudnn, "cudnn ragged (cum_seq), copies included": ragged_cudnn, "split keys at 128k, merged": split_keys,
                "keys padded to 128k, masked": padded_keys,
                "pytorch flash": backend(SDPBackend.FLASH_ATTENTION),
                "pytorch memory-efficient": backend(SDPBackend.EFFICIENT_ATTENTION)}
    if triton is not None:
        for config in filter(None, args.triton.split(",")):
            variants[f"triton {config}"] = triton_attention(*(int(n) for n in config.split("x")))
    for batch in (int(n) for n in args.batches.split(",")):
        seqs = 2 * batch
        for frames in (int(n) for n in args.lengths.split(",")):
            q, k, v = projections(seqs, frames)
            for name, fn in variants.items():
                if name != "cudnn" and not name.startswith("triton") and frames not in (1424, 1456):
                    continue
                key = f"batch {batch}, {frames} frames, {name}"
                try:
                    row = {"us": kernel_us(lambda: fn(q, k, v)), "rel_diff_vs_fp32": round(rel_diff(fn(q, k, v), q, k, v), 6)}
                except Exception as error:  # noqa: BLE001  a variant a backend refuses is a result too
                    row = {"error": f"{type(error).__name__}: {error}"[:200]}
                out["us_per_call"][key] = row
                print(key, row, flush=True)
            if frames in (1424, 1456):  # variants whose inputs a model would lay out so: built outside the timing
                q, k, v = projections(seqs, frames)
                for name, prepare in {"head dim 72, keys padded to 128k (extra dimension)": extra_dimension,
                                      "cudnn ragged (cum_seq), packed beforehand": packed}.items():
                    key = f"batch {batch}, {frames} frames, {name}"
                    try:
                        prepared = prepare(q, k, v)
                        if len(prepared) == 4:
                            q2, k2, v2, dim = prepared

                            def run(q2=q2, k2=k2, v2=v2, dim=dim):
                                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                                    return F.scaled_dot_product_attention(q2, k2, v2, scale=dim ** -0.5)[..., :dim]
                        else:
                            def run(prepared=prepared):
                                return ragged_cudnn(*prepared)
                        row = {"us": kernel_us(run), "rel_diff_vs_fp32": round(rel_diff(run(), q, k, v), 6)}
                    except Exception as error:  # noqa: BLE001  a variant a backend refuses is a result too
                        row = {"error": f"{type(error).__name__}: {error}"[:200]}
                    out["us_per_call"][key] = row
                    print(key, row, flush=True)
        for q_frames, kv_frames in ((1456, 1408), (1408, 1456)):
            q, _, _ = projections(seqs, q_frames)
            _, k, v = projections(seqs, kv_frames)
            key = f"batch {batch}, queries {q_frames}, keys {kv_frames}, cudnn"
            out["us_per_call"][key] = {"us": kernel_us(lambda: cudnn(q, k, v))}
            print(key, out["us_per_call"][key], flush=True)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
