#!/usr/bin/env python3
"""F5-TTS's convolutional position embedding on the GPU, computed four equal ways.

    python bench/probes/conv_probe.py [--json OUT]

ConvPositionEmbedding is two Conv1d(1024, 1024, kernel 31, groups 16) + Mish. In a DiT step's
profile (bench/results/step-probe-h100.json) cuDNN spends ~22% of the GPU time on it at ~9 TFLOP/s.
Ways: as F5-TTS runs it (NCL Conv1d); as a channels-last Conv2d (the (b, n, d) activations already
are channels-last: no transposes); the same with cuDNN autotuning; as im2col + batched matmul.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F


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


def timed(fn, runs=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / runs * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    from f5_worker.engine.sampler import conv_position_embedding

    from f5_tts.model.modules import ConvPositionEmbedding

    torch.manual_seed(0)
    module = ConvPositionEmbedding(1024).cuda().half().eval()
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "ms": {}}
    with torch.inference_mode():
        for seqs in (2, 32, 128):
            x = torch.randn(seqs, 1406, 1024, device="cuda", dtype=torch.float16)
            ref = module(x)
            row = {}
            for name, fn in [("f5_conv1d", lambda: module(x)),
                             ("channels_last_conv2d", lambda: conv_position_embedding(module, x)),
                             ("im2col_bmm", lambda: im2col(module, x))]:
                torch.backends.cudnn.benchmark = False
                row[name] = round(timed(fn), 3)
                torch.backends.cudnn.benchmark = True
                row[name + "_cudnn_benchmark"] = round(timed(fn), 3)
            torch.backends.cudnn.benchmark = False
            mine = conv_position_embedding(module, x)
            row["rel_diff"] = float((mine.float() - ref.float()).abs().max() / ref.float().abs().max())
            row["rel_diff_im2col"] = float((im2col(module, x).float() - ref.float()).abs().max() / ref.float().abs().max())
            flops = 2 * 2 * seqs * 1406 * 1024 * 64 * 31
            row["tflops_f5"] = round(flops / row["f5_conv1d"] / 1e9, 1)
            out["ms"][seqs] = row
            print(seqs, row, flush=True)
    print(json.dumps(out, indent=1))
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
