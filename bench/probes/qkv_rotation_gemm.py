#!/usr/bin/env python3
"""Would a q/k/v projection of our own, with the rotary rotation in its epilogue, beat cuBLAS's projection followed
by the rotation kernel? (issue 16: the rotation is the largest pass left outside the matmuls and the attention)

    python bench/probes/qkv_rotation_gemm.py [--json OUT]   # GPU machine: bash bench/gpu.sh probe-qkv-gemm
    python bench/probes/qkv_rotation_gemm.py --smoke   # CPU (Triton's interpreter): the epilogue's numbers only

F5TTS_v1_Base's projection: tokens x (1024) -> q, k, v (3 x 16 heads x 64), with bias, fp16; q and k then turned by
the rotary angles of their frame (each product rounded, then their sum, as x-transformers' fp16 code rounds:
``kernels.rotate_qk_``). Here, at 1420 frames and 2, 16 and 32 sequences (batch 1, 8, 16 with guidance):
- cuBLAS: ``F.linear``, then ``kernels.rotate_qk_`` in place; each alone and both (CUDA-graph replays);
- a Triton matmul (K-loop of ``tl.dot``; operands by pointers or through TMA tensor descriptors) whose epilogue adds
  the bias, rounds to fp16 as the Linear does, and turns q and k before the one store; block shapes swept; and
  the same matmul without the rotation (is it as fast as cuBLAS at all?);
- each output against cuBLAS + rotation: the share of bit-equal elements and the largest difference (the matmul's
  own summation order differs from cuBLAS's, so a few elements round the other way).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if "--smoke" in sys.argv:  # the CPU runs the kernels only in Triton's interpreter, set before they are defined
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

HEADS, DIM_HEAD, WIDTH, FRAMES = 16, 64, 1024, 1420
LAUNCH = {"enable_fp_fusion": False}  # as the engine's kernels: a product and a sum round apart, as F5-TTS's do


@triton.jit
def _epilogue(acc, bias_ptr, rope_ptr, rows, cols, pid_n, M, seq_len, BN: tl.constexpr, ROT_COLS: tl.constexpr,
              DIM_HEAD: tl.constexpr, ROTATE: tl.constexpr):
    acc = acc + tl.load(bias_ptr + cols).to(tl.float32)[None, :]
    y = acc.to(tl.float16)  # the Linear's output, rounded as F5-TTS's fp16 Linear rounds it
    if ROTATE and pid_n * BN < ROT_COLS:  # a tile of q or k (BN divides the q, k and v widths)
        even, odd = tl.split(tl.reshape(y.to(tl.float32), (y.shape[0], BN // 2, 2)))
        pair = (pid_n * (BN // 2) + tl.arange(0, BN // 2)) % (DIM_HEAD // 2)
        at = ((rows % seq_len)[:, None] * (DIM_HEAD // 2) + pair[None, :]) * 2
        inside = (rows < M)[:, None]
        cos = tl.load(rope_ptr + at, mask=inside, other=0.0).to(tl.float32)
        sin = tl.load(rope_ptr + at + 1, mask=inside, other=0.0).to(tl.float32)
        new_even = ((even * cos).to(tl.float16).to(tl.float32) - (odd * sin).to(tl.float16).to(tl.float32))
        new_odd = ((odd * cos).to(tl.float16).to(tl.float32) + (even * sin).to(tl.float16).to(tl.float32))
        y = tl.reshape(tl.join(new_even.to(tl.float16), new_odd.to(tl.float16)), (y.shape[0], BN))
    return y


@triton.jit
def _tile(M, N, BM: tl.constexpr, BN: tl.constexpr, GROUP_M: tl.constexpr):
    # Grouped order: GROUP_M row blocks share their column blocks of W while they are in L2.
    pid = tl.program_id(0)
    num_m, num_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    group = GROUP_M * num_n
    first_m = (pid // group) * GROUP_M
    size = tl.minimum(num_m - first_m, GROUP_M)
    return first_m + (pid % group) % size, (pid % group) // size


@triton.jit
def _qkv_pointers(x_ptr, w_ptr, bias_ptr, rope_ptr, out_ptr, M, N, K: tl.constexpr, seq_len, ROT_COLS: tl.constexpr,
                  DIM_HEAD: tl.constexpr, ROTATE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  GROUP_M: tl.constexpr, STAGES: tl.constexpr):
    pid_m, pid_n = _tile(M, N, BM, BN, GROUP_M)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    ks = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), tl.float32)
    for k in tl.range(0, K, BK, num_stages=STAGES):
        a = tl.load(x_ptr + rows[:, None] * K + (k + ks)[None, :], mask=(rows < M)[:, None], other=0.0)
        w = tl.load(w_ptr + cols[:, None] * K + (k + ks)[None, :])
        acc = tl.dot(a, w.T, acc)
    y = _epilogue(acc, bias_ptr, rope_ptr, rows, cols, pid_n, M, seq_len, BN, ROT_COLS, DIM_HEAD, ROTATE)
    tl.store(out_ptr + rows[:, None] * N + cols[None, :], y, mask=(rows < M)[:, None])


@triton.jit
def _qkv_tma(x_desc, w_desc, bias_ptr, rope_ptr, out_desc, M, N, K: tl.constexpr, seq_len, ROT_COLS: tl.constexpr,
             DIM_HEAD: tl.constexpr, ROTATE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
             GROUP_M: tl.constexpr, STAGES: tl.constexpr):
    pid_m, pid_n = _tile(M, N, BM, BN, GROUP_M)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    acc = tl.zeros((BM, BN), tl.float32)
    for k in tl.range(0, K, BK, num_stages=STAGES):
        a = x_desc.load([pid_m * BM, k])  # rows past M come back as zeros
        w = w_desc.load([pid_n * BN, k])
        acc = tl.dot(a, w.T, acc)
    y = _epilogue(acc, bias_ptr, rope_ptr, rows, cols, pid_n, M, seq_len, BN, ROT_COLS, DIM_HEAD, ROTATE)
    out_desc.store([pid_m * BM, pid_n * BN], y)  # rows past M are not written


def projected(x, weight, bias, rope, seq_len, *, rotate=True, tma=False, bm=128, bn=128, bk=64, warps=8, stages=3,
              group_m=8):
    """x (tokens, K) @ weight.T + bias, q and k turned by ``rope`` (seq_len, DIM_HEAD / 2, 2) in the epilogue."""
    M, K = x.shape
    N = weight.shape[0]
    out = torch.empty(M, N, device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
    shape = dict(ROT_COLS=2 * HEADS * DIM_HEAD, DIM_HEAD=DIM_HEAD, ROTATE=rotate, BM=bm, BN=bn, BK=bk,
                 GROUP_M=group_m, STAGES=stages, num_warps=warps, **LAUNCH)
    if tma:
        from triton.tools.tensor_descriptor import TensorDescriptor

        _qkv_tma[grid](TensorDescriptor.from_tensor(x, [bm, bk]), TensorDescriptor.from_tensor(weight, [bn, bk]),
                       bias, rope, TensorDescriptor.from_tensor(out, [bm, bn]), M, N, K, seq_len, **shape)
    else:
        _qkv_pointers[grid](x, weight, bias, rope, out, M, N, K, seq_len, **shape)
    return out


def reference(x, weight, bias, rope_complex, seqs, seq_len):
    """cuBLAS's projection, then the engine's rotation (``kernels.rotate_qk_`` on the GPU, its PyTorch twin else)."""
    qkv = F.linear(x, weight, bias).view(seqs, seq_len, 3, HEADS, DIM_HEAD)
    if x.is_cuda:
        from f5_worker.engine.nn import kernels

        return kernels.rotate_qk_(qkv, rope_complex).view(seqs * seq_len, -1)
    from f5_worker.engine.nn.rotary import rotate_heads

    qk = rotate_heads(qkv[:, :, :2], rope_complex.to(torch.complex64))
    return torch.cat((qk, qkv[:, :, 2:]), dim=2).reshape(seqs * seq_len, -1)


def inputs(seqs, frames, device, dtype=torch.float16):
    generator = torch.Generator().manual_seed(seqs)
    x = torch.randn(seqs * frames, WIDTH, generator=generator).to(device, dtype)
    weight = (torch.randn(3 * HEADS * DIM_HEAD, WIDTH, generator=generator) / WIDTH ** 0.5).to(device, dtype)
    bias = (torch.randn(3 * HEADS * DIM_HEAD, generator=generator) * 0.02).to(device, dtype)
    angles = torch.arange(frames)[:, None] * (10000 ** (-torch.arange(0, DIM_HEAD, 2) / DIM_HEAD))[None, :]
    # complex32, as the engine's angles for fp16 activations (RotaryEmbedding.angles): cos and sin in fp16
    rope_complex = torch.polar(torch.ones_like(angles), angles.float()).to(torch.complex32).to(device)
    return x, weight, bias, rope_complex, torch.view_as_real(rope_complex).contiguous()


def compare(got, expected) -> dict:
    return {"bit_equal": round(float((got == expected).float().mean()), 6),
            "max_abs_diff": float((got.float() - expected.float()).abs().max())}


def smoke() -> int:
    """Triton's interpreter on the CPU (TRITON_INTERPRET=1): the epilogue turns q and k as the engine does."""
    seqs, frames = 2, 40
    x, weight, bias, rope_complex, rope = inputs(seqs, frames, "cpu")
    expected = reference(x.float(), weight.float(), bias.float(), rope_complex, seqs, frames)
    got = projected(x, weight, bias, rope, frames, bm=32, bn=64, bk=32, warps=4, stages=1).float()
    row = compare(got, expected.half().float())
    print("smoke (fp32 reference rounded to fp16):", row)
    return 0 if row["max_abs_diff"] < 2e-2 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--seqs", default="2,16,32")
    args = parser.parse_args()
    if args.smoke:
        return smoke()
    from common import environment, graph_replay_us, report

    out: dict = {**environment("cuda", "F5TTS_v1_Base q/k/v projection + rotation"), "frames": FRAMES, "rows": {}}
    configs = [dict(tma=tma, bm=bm, bn=bn, bk=64, warps=warps, stages=stages)
               for tma in (False, True) for bm, bn, warps, stages in
               ((128, 128, 8, 3), (128, 128, 4, 4), (128, 256, 8, 3), (64, 128, 4, 4), (128, 64, 4, 4))]
    for seqs in (int(n) for n in args.seqs.split(",")):
        x, weight, bias, rope_complex, rope = inputs(seqs, FRAMES, "cuda")
        expected = reference(x, weight, bias, rope_complex, seqs, FRAMES)
        from f5_worker.engine.nn import kernels

        qkv = F.linear(x, weight, bias)
        rows = {"cublas linear": graph_replay_us(lambda: F.linear(x, weight, bias)),
                "rotate_qk_ alone": graph_replay_us(
                    lambda: kernels.rotate_qk_(qkv.view(seqs, FRAMES, 3, HEADS, DIM_HEAD), rope_complex)),
                "cublas linear + rotate_qk_": graph_replay_us(lambda: reference(x, weight, bias, rope_complex, seqs,
                                                                                FRAMES))}
        for config in configs:
            name = "triton {} {}x{}x{} w{} s{}".format("tma" if config["tma"] else "ptr", config["bm"], config["bn"],
                                                      config["bk"], config["warps"], config["stages"])
            for rotate in (True, False):
                try:
                    got = projected(x, weight, bias, rope, FRAMES, rotate=rotate, **config)
                    row = {"us": graph_replay_us(lambda: projected(x, weight, bias, rope, FRAMES, rotate=rotate,
                                                                   **config))}
                    if rotate:
                        row.update(compare(got, expected))
                    else:
                        row.update(compare(got, F.linear(x, weight, bias)))
                except Exception as error:  # noqa: BLE001  a shape Triton refuses is a result
                    row = {"error": f"{type(error).__name__}: {str(error)[:240]}"}
                rows[name + (" + rotation" if rotate else ", plain")] = row
        for name, row in rows.items():
            print(f"{seqs} sequences, {name}: {row}", flush=True)
        out["rows"][f"{seqs} sequences"] = rows
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
