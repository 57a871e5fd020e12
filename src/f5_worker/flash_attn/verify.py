"""Check a staged flash-attn in a child process: ``python -m f5_worker.flash_attn.verify SITE_DIR``.

A wheel built for another torch fails at import with ``undefined symbol``; a
damaged extension can kill the interpreter outright. Either must cost a child
process, never the worker, so the worker only ever imports a flash_attn that
passed here. Checks, in order:

1. ``import flash_attn`` resolves to SITE_DIR (not some other copy) and its CUDA
   extension ``flash_attn_2_cuda`` imports;
2. ``flash_attn_func`` and ``flash_attn_varlen_func`` on random inputs agree with
   PyTorch SDPA within ``REL_TOLERANCE`` (on the GPU in fp16 when there is one);
3. on a GPU, both are timed against SDPA at F5-TTS's attention shapes, so the
   worker can choose its backend by measurement.

The last line of stdout is one JSON object (``VerifyResult``).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

# fp16 flash-attn vs SDPA differ by ~4e-4 relative on the H100 (shared/gpu/README.md); a broken
# kernel is off by orders of magnitude more.
REL_TOLERANCE = 2e-2
# F5TTS_v1_Base: 16 heads of 64; a CFG pair of a 15 s utterance is ~1400 mel frames.
HEADS, HEAD_DIM = 16, 64


def _rel_error(out, ref) -> float:
    return float((out.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-6))


def _time_ms(fn, iters: int = 20) -> float:
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / iters


def check(site_dir: Path, result: dict) -> dict:
    """Fill ``result`` as the checks go, so a failure still says which stage it reached."""
    result.update(ok=False, stage="import")
    import flash_attn

    location = Path(flash_attn.__file__).resolve()
    result["version"] = getattr(flash_attn, "__version__", None)
    if site_dir.resolve() not in location.parents:
        result["error"] = f"import flash_attn found {location}, not the staged copy in {site_dir}"
        return result
    result["location"] = str(location.relative_to(site_dir.resolve()))  # the site moves when published
    import flash_attn_2_cuda  # noqa: F401  the compiled extension; a mismatched build fails here
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    result["stage"] = "numerics"
    import torch
    import torch.nn.functional as F

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    result["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=gen)

    def sdpa(q, k, v, mask=None):  # (batch, seq, heads, dim) in and out, like flash-attn
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask).transpose(1, 2)

    q, k, v = rand(2, 256, HEADS, HEAD_DIM), rand(2, 256, HEADS, HEAD_DIM), rand(2, 256, HEADS, HEAD_DIM)
    result["rel_error"] = _rel_error(flash_attn_func(q, k, v), sdpa(q, k, v))

    lengths = [37, 256, 100]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    qv, kv, vv = (rand(sum(lengths), HEADS, HEAD_DIM) for _ in range(3))
    out = flash_attn_varlen_func(qv, kv, vv, cu, cu, max(lengths), max(lengths))
    ref = torch.cat([sdpa(*(t[cu[i]:cu[i + 1]][None] for t in (qv, kv, vv)))[0] for i in range(len(lengths))])
    result["varlen_rel_error"] = _rel_error(out, ref)

    worst = max(result["rel_error"], result["varlen_rel_error"])
    if not worst < REL_TOLERANCE:  # also catches NaN
        result["error"] = f"output differs from SDPA by {worst:.3g} (relative), tolerance {REL_TOLERANCE}"
        return result

    if device == "cuda":
        result["stage"] = "timing"
        result["timings_ms"] = _timings(flash_attn_func, flash_attn_varlen_func, rand, sdpa)
    result["stage"] = "done"
    result["ok"] = True
    return result


def _timings(flash_attn_func, flash_attn_varlen_func, rand, sdpa) -> dict:
    import torch

    q, k, v = (rand(2, 1400, HEADS, HEAD_DIM) for _ in range(3))
    timings = {
        "dense_flash_attn": _time_ms(lambda: flash_attn_func(q, k, v)),
        "dense_sdpa": _time_ms(lambda: sdpa(q, k, v)),
    }
    # A batch of mixed lengths: varlen packs them; SDPA pads to the longest and masks.
    lengths = [300, 700, 1100, 1500, 1900, 2300, 2700, 3000]
    total, longest = sum(lengths), max(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    qv, kv, vv = (rand(total, HEADS, HEAD_DIM) for _ in range(3))
    qp, kp, vp = (rand(len(lengths), longest, HEADS, HEAD_DIM) for _ in range(3))
    keep = torch.arange(longest, device="cuda")[None, :] < torch.tensor(lengths, device="cuda")[:, None]
    mask = keep[:, None, None, :]
    timings["varlen_flash_attn"] = _time_ms(lambda: flash_attn_varlen_func(qv, kv, vv, cu, cu, longest, longest))
    timings["masked_sdpa"] = _time_ms(lambda: sdpa(qp, kp, vp, mask))
    return {name: round(ms, 4) for name, ms in timings.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m f5_worker.flash_attn.verify SITE_DIR", file=sys.stderr)
        return 2
    result: dict = {}
    try:
        check(Path(argv[0]), result)
    except BaseException as exc:  # report anything the staged code raises, as data
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=5))
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
