#!/usr/bin/env python3
"""The whole engine with FlashAttention-4's kernels in place of cuDNN's for unmasked attention: what would
issue 16's throughput be? (a probe: the worker has no FA4 backend; follows fa4_attention.py)

    FA4_SITE=DIR python bench/probes/fa4_engine.py ARGS...   # GPU machine: bash bench/gpu.sh probe-fa4-engine

Runs bench/throughput.py with ARGS after replacing, in the engine's attention module only, SDPA's unmasked calls
by flash-attn-4's ``flash_attn_func`` on the same (sequences, frames, heads, 64) views (masked calls stay
SDPA). Everything else (tuning, graphs, kernels, the benchmark) is throughput.py's own. FA4 compiles at its
first call (~2 s, in the eager run before each capture).
"""

from __future__ import annotations

import os
import runpy
import site
import sys
import types
from pathlib import Path

import torch.nn.functional as torch_functional

if os.environ.get("FA4_SITE"):
    site.addsitedir(os.environ["FA4_SITE"])
from flash_attn.cute import flash_attn_func  # noqa: E402

from f5_worker.engine.nn import attention  # noqa: E402

CALLS = {"fa4": 0, "sdpa": 0}


def scaled_dot_product_attention(q, k, v, attn_mask=None, **kwargs):
    """(batch, heads, frames, dim) in and out, as SDPA; unmasked CUDA calls go to FA4 on (batch, frames, ...)."""
    if attn_mask is None and not kwargs and q.is_cuda:
        CALLS["fa4"] += 1
        result = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=q.shape[-1] ** -0.5)
        return (result[0] if isinstance(result, tuple) else result).transpose(1, 2)
    CALLS["sdpa"] += 1
    return torch_functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, **kwargs)


shim = types.ModuleType("functional_with_fa4")
shim.__dict__.update({name: getattr(torch_functional, name) for name in dir(torch_functional) if not name.startswith("__")})
shim.scaled_dot_product_attention = scaled_dot_product_attention
attention.F = shim

if __name__ == "__main__":
    script = Path(__file__).resolve().parents[1] / "throughput.py"
    sys.argv = [str(script), *sys.argv[1:]]
    sys.path.insert(0, str(script.parent))  # (as running it as a script would: its ``common`` import)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        print("attention calls (eager and captures; replays not counted):", CALLS, flush=True)
