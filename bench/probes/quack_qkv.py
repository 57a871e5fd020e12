#!/usr/bin/env python3
"""quack's CuTe-DSL GEMMs (quack-kernels, already in the pinned FlashAttention-4 set) on the q/k/v projection: is
its plain GEMM as fast as cuBLAS here, and its ready-made RoPE epilogue (``quack.epilogue.rotary.rope_table_epi``)
faster than cuBLAS + ``kernels.rotate_qk_``? (issue 16; follows qkv_rotation_gemm.py, whose Triton matmul ran 15%
behind cuBLAS)

    python bench/probes/quack_qkv.py [--json OUT]   # GPU machine: bash bench/gpu.sh probe-quack-qkv (.fa4a-c, .device)

q and k (2048 columns) through the RoPE epilogue, v (1024) through the plain GEMM with bias, against cuBLAS's one
projection + the rotation kernel; 1420 frames, 2, 16 and 32 sequences. quack's RoPE rotates the fp32 accumulator
(F5-TTS rounds the projection to fp16 first, then each product): the share of bit-equal elements says how far
that is from the engine's rounding. Each call form that quack refuses is a result (its error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, graph_replay_us, kernel_us, report  # noqa: E402
from qkv_rotation_gemm import DIM_HEAD, FRAMES, HEADS, compare, inputs, reference  # noqa: E402

QK = 2 * HEADS * DIM_HEAD


def attempt(rows: dict, name: str, call, expected=None) -> None:
    try:
        got = call()
        torch.cuda.synchronize()
        row = {"us": kernel_us(call), "graph_us": graph_replay_us(call)}
        if expected is not None:
            row.update(compare(got, expected))
    except Exception as error:  # noqa: BLE001  a refused call form is a result
        row = {"error": f"{type(error).__name__}: {str(error)[:400]}"}
    rows[name] = row
    print(name, row, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--seqs", default="32,16,2")
    args = parser.parse_args()
    from quack.epilogue.rotary import rope_table_epi
    from quack.gemm_interface import gemm

    from f5_worker.engine.nn import kernels

    out: dict = {**environment("cuda", "F5TTS_v1_Base q/k/v projection, quack"), "frames": FRAMES, "rows": {}}
    try:
        from importlib.metadata import version
        out["versions"] = {name: version(name) for name in ("quack-kernels", "nvidia-cutlass-dsl")}
    except Exception as error:  # noqa: BLE001
        out["versions"] = str(error)
    for seqs in (int(n) for n in args.seqs.split(",")):
        x, weight, bias, rope_complex, rope = inputs(seqs, FRAMES, "cuda")
        expected = reference(x, weight, bias, rope_complex, seqs, FRAMES)
        rows: dict = {}
        qkv = F.linear(x, weight, bias)
        attempt(rows, "cublas linear", lambda: F.linear(x, weight, bias))
        attempt(rows, "rotate_qk_ alone", lambda: kernels.rotate_qk_(qkv.view(seqs, FRAMES, 3, HEADS, DIM_HEAD),
                                                                     rope_complex))
        attempt(rows, "cublas linear + rotate_qk_", lambda: reference(x, weight, bias, rope_complex, seqs, FRAMES),
                expected)
        attempt(rows, "quack gemm (x, W.T, bias), all of q/k/v", lambda: gemm(x, weight.T, bias=bias), qkv)
        # The RoPE table: (tokens, 64), cos at even columns, sin at odd, the frame's angles for every sequence.
        table = rope.float().reshape(FRAMES, DIM_HEAD).repeat(seqs, 1).contiguous()
        w_qk, b_qk, w_v, b_v = weight[:QK], bias[:QK], weight[QK:].contiguous(), bias[QK:]
        expected_qk = expected.view(-1, 3 * HEADS * DIM_HEAD)[:, :QK]
        d = torch.empty(x.shape[0], QK, device="cuda", dtype=x.dtype)
        for tile_n in (128, 256):
            for bias_form, b in (("fp32 (1, n)", b_qk.float()[None]), ("fp16 (n,)", b_qk)):
                def rope_call(tile_n=tile_n, b=b):
                    rope_table_epi.gemm(x, w_qk, d, None, epi_args={"cs": table, "bias": b}, tile_M=128,
                                        tile_N=tile_n)
                    return d

                attempt(rows, f"quack rope_table_epi q/k, tile 128x{tile_n}, bias {bias_form}", rope_call, expected_qk)

        def quack_qkv():
            rope_table_epi.gemm(x, w_qk, d, None, epi_args={"cs": table, "bias": b_qk.float()[None]}, tile_M=128,
                                tile_N=256)
            return d, gemm(x, w_v.T, bias=b_v)

        attempt(rows, "quack rope q/k + plain v (two launches)", quack_qkv)
        out["rows"][f"{seqs} sequences"] = rows
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
