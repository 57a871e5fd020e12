#!/usr/bin/env python3
"""F5-TTS's convolutional position embedding on the GPU, computed four equal ways.

    python bench/probes/conv_probe.py [--json OUT]
    python bench/probes/conv_probe.py --device cpu --dim 64 --seqs 2 --runs 1   # smoke run

ConvPositionEmbedding is two Conv1d(1024, 1024, kernel 31, groups 16) + Mish. In a DiT step's
profile (bench/results/step-probe-h100.json) cuDNN spends ~22% of the GPU time on it at ~9 TFLOP/s.
Ways: as F5-TTS runs it (NCL Conv1d); as a channels-last Conv2d (the (b, n, d) activations already
are channels-last: no transposes); the same with cuDNN autotuning; as im2col + batched matmul.
F5-TTS's module comes through tests/lib/support/f5_reference.py (bench/common.py), the channels-last
way is the worker's own (``nn.dit.conv_position_embedding``, which serves since the fusions).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: common
from common import environment, f5_reference, report, sync  # noqa: E402


def im2col(module, x):
    """The same as one grouped-convolution matrix product per group over unfolded windows (then Mish)."""
    h = x
    for layer in module.conv1d:
        if isinstance(layer, torch.nn.Conv1d):
            b, n, d = h.shape
            g, k, pad = layer.groups, layer.kernel_size[0], layer.padding[0]
            cols = F.pad(h, (0, 0, pad, pad)).unfold(1, k, 1)  # (b, n, d, k), a view
            cols = cols.reshape(b * n, g, (d // g) * k).transpose(0, 1)  # (g, b*n, c*k)
            weight = layer.weight.view(g, d // g, (d // g) * k)  # (g, out per group, c*k)
            h = torch.bmm(cols, weight.transpose(1, 2)).transpose(0, 1).reshape(b, n, d) + layer.bias
        else:
            h = layer(h)
    return h


def timed(fn, device, runs=20):
    for _ in range(3):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / runs * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dim", type=int, default=1024, help="F5TTS_v1_Base: 1024")
    parser.add_argument("--seqs", default="2,32,128", help="sequences per call (a CFG pair per request)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from f5_worker.engine.nn import conv_position_embedding

    device = args.device
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    module = f5_reference().modules.ConvPositionEmbedding(args.dim).to(device=device, dtype=dtype).eval()
    out = {**environment(device, f"ConvPositionEmbedding({args.dim})"), "dtype": str(dtype), "ms": {}}
    with torch.inference_mode():
        for seqs in [int(v) for v in args.seqs.split(",")]:
            x = torch.randn(seqs, 1406, args.dim, device=device, dtype=dtype)
            ref = module(x)
            row = {}
            for name, fn in [("f5_conv1d", lambda: module(x)),
                             ("channels_last_conv2d", lambda: conv_position_embedding(module, x)),
                             ("im2col_bmm", lambda: im2col(module, x))]:
                torch.backends.cudnn.benchmark = False
                row[name] = round(timed(fn, device, args.runs), 3)
                torch.backends.cudnn.benchmark = True
                row[name + "_cudnn_benchmark"] = round(timed(fn, device, args.runs), 3)
            torch.backends.cudnn.benchmark = False
            mine = conv_position_embedding(module, x)
            row["rel_diff"] = float((mine.float() - ref.float()).abs().max() / ref.float().abs().max())
            row["rel_diff_im2col"] = float((im2col(module, x).float() - ref.float()).abs().max() / ref.float().abs().max())
            flops = 2 * 2 * seqs * 1406 * args.dim * (args.dim // 16) * 31
            row["tflops_f5"] = round(flops / row["f5_conv1d"] / 1e9, 1)
            out["ms"][seqs] = row
            print(seqs, row, flush=True)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
