#!/usr/bin/env python3
"""FlashAttention-4's CuTe-DSL kernels on Hopper (flash-attn-4 on PyPI, compiled at first call, no build step):
do they run F5TTS_v1_Base's attention faster than cuDNN, at multiples of 128 frames and between? (issue 16)

    python bench/probes/fa4_attention.py [--json OUT]   # GPU machine: bash bench/gpu.sh probe-fa4

cuDNN runs lengths between multiples of 128 at ~345 TFLOP/s against ~455 at the multiples, however it is told the
length (cudnn-frontend-h200.json), and a Triton kernel does no better (triton-tma-h200.json). flash-attn-4 and its
dependencies (nvidia-cutlass-dsl with its CUDA 13 libraries, quack-kernels, apache-tvm-ffi, cuda-bindings) are
~300 MB installed: carried as a split archive for the probe only (bench/probes/README.md says how). Here: its
``flash_attn_func`` on q, k, v as the projection lays them out ((sequences, frames, heads, 64) views), fp16,
batch 1 and 16 (2 and 32 sequences with guidance), beside PyTorch's cuDNN call: µs per call (CUDA events, median
of 5 runs of 20), mean relative difference from float32 attention, the first call's time (compilation), and
whether it replays from a CUDA graph.

--tiles M:N,...: the same call through ``flash_attn.cute.interface._flash_attn_fwd`` with each tile shape (FA4
picks 192 x 128 for head dim 64 on Hopper, so 1424 keys run as 12 blocks of 128 where 11.1 hold keys; 144 or 160
wide blocks would waste ~1%): µs per replayed call and the difference from float32 per shape.
"""

from __future__ import annotations

import os
import site
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, graph_replay_us, kernel_us, report  # noqa: E402

HEADS, DIM = 16, 64


def tiled_row(q, k, v, tile_mn, diff) -> dict:
    """One tile shape: first call (compilation), replayed µs, difference from float32; an error is a result."""
    from flash_attn.cute.interface import _flash_attn_fwd

    def call():
        return _flash_attn_fwd(q, k, v, softmax_scale=DIM ** -0.5, tile_mn=tile_mn)[0]

    try:
        first = time.perf_counter()
        result = call()
        torch.cuda.synchronize()
        first_s = round(time.perf_counter() - first, 2)
        return {"graph_replay_us": graph_replay_us(call), "rel_diff_vs_fp32": diff(result), "first_call_s": first_s}
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {str(error)[:300]}"}


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--batches", default="16,1")
    parser.add_argument("--lengths", default="1408,1424,1456,1536")
    parser.add_argument("--tiles", default="", help="tile shapes M:N to sweep, e.g. 192:128,192:144")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a GPU")
    if os.environ.get("FA4_SITE"):  # the unpacked archive: a site directory (its .pth puts CuTe's DSL on the path)
        site.addsitedir(os.environ["FA4_SITE"])
    began = time.perf_counter()
    from flash_attn.cute import flash_attn_func

    out: dict = {**environment("cuda", "F5TTS_v1_Base attention shape"), "import_s": round(time.perf_counter() - began, 2),
                 "us": {}}
    try:
        from importlib.metadata import version
        out["versions"] = {name: version(name) for name in ("flash-attn-4", "nvidia-cutlass-dsl", "quack-kernels")}
    except Exception as error:  # noqa: BLE001
        out["versions"] = str(error)
    print("import", out["import_s"], out["versions"], flush=True)

    def fa4(q, k, v):
        result = flash_attn_func(q, k, v, softmax_scale=DIM ** -0.5)
        return result[0] if isinstance(result, tuple) else result

    for batch in (int(n) for n in args.batches.split(",")):
        seqs = 2 * batch
        for frames in (int(n) for n in args.lengths.split(",")):
            qkv = torch.randn(seqs, frames, 3, HEADS, DIM, device="cuda", dtype=torch.float16)
            q, k, v = qkv.unbind(2)  # (seqs, frames, heads, dim) strided views, as the model has them
            exact = F.scaled_dot_product_attention(*(t.transpose(1, 2).float() for t in (q, k, v))).transpose(1, 2)

            def diff(result):
                return round(float((result.float() - exact).abs().mean() / exact.abs().mean()), 6)

            def cudnn():
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    return F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)

            rows = {"cudnn": {"us": kernel_us(cudnn), "rel_diff_vs_fp32": diff(cudnn())}}
            for name, inputs in (("fa4 (views)", (q, k, v)),
                                 ("fa4 (contiguous copies, outside the timing)", tuple(t.contiguous() for t in (q, k, v)))):
                try:
                    first = time.perf_counter()
                    result = fa4(*inputs)
                    torch.cuda.synchronize()
                    first_s = round(time.perf_counter() - first, 2)
                    rows[name] = {"us": kernel_us(lambda: fa4(*inputs)), "rel_diff_vs_fp32": diff(result),
                                  "first_call_s": first_s, "graph_replay_us": graph_replay_us(lambda: fa4(*inputs))}
                except Exception as error:  # noqa: BLE001  refused is a result
                    rows[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            for tile in filter(None, args.tiles.split(",")):
                tile_mn = tuple(int(n) for n in tile.split(":"))
                rows[f"fa4 tile {tile}"] = tiled_row(q, k, v, tile_mn, diff)
            for name, row in rows.items():
                key = f"batch {batch}, {frames} frames, {name}"
                out["us"][key] = row
                print(key, row, flush=True)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
