#!/usr/bin/env python3
"""What a request costs when its length is new (CUDA graph capture) and when it is not, per attention path.

    python bench/new_lengths.py [--json OUT]

F5TTS_v1_Base size, random weights, fp16, NFE 32, the whole engine, one request at a time. 12 requests whose
texts give 12 different lengths (7-13 s of speech), then the same 12 again (graphs cached). Paths for
requests of one length: SDPA as torch picks it (cuDNN attention on the H100), SDPA with cuDNN attention
disabled (PyTorch's own flash kernel), and flash-attn's flash_attn_func.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

SR = 24_000
REF_TEXT = "A reference voice of five seconds or so, read at an even pace."
WORDS = "The worker reads this sentence aloud for the benchmark, at a steady pace, and then it stops there. " * 3


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def split_new_length_cost(engine) -> dict:
    """Where a new length's extra time goes: the sampler (graph capture) or the vocoder (new conv shapes)."""
    from f5_worker.engine.sampler import SampleRequest, SamplingConfig

    def timed(fn):
        torch.cuda.synchronize()
        began = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - began) * 1000

    cond = torch.randn(469, 100, device="cuda", dtype=torch.float16)
    text = torch.randint(1, 100, (160,))
    rows = {"sampler_first": [], "sampler_again": [], "vocoder_first": [], "vocoder_again": []}
    for frames in (1520, 1616, 1712, 1808):
        request = [SampleRequest(cond, text, frames, 0)]
        mel = torch.randn(1, 100, frames - 468, device="cuda")
        for label, fn in (("sampler", lambda: engine.batcher.call(lambda: engine.sampler.sample(request, SamplingConfig()))),
                          ("vocoder", lambda: engine.batcher.call(lambda: engine.vocoder.decode(mel)))):
            rows[f"{label}_first"].append(timed(fn))
            rows[f"{label}_again"].append(timed(fn))
    return {k: round(statistics.mean(v), 1) for k, v in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--split-only", action="store_true")
    parser.add_argument("--prewarmed", action="store_true", help="let the engine prepare lengths while idle first")
    args = parser.parse_args()
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
    from f5_worker.engine.models import ModelFiles

    variants = [("sdpa_default", "torch", True)] if args.split_only else \
        [("sdpa_default", "torch", True), ("sdpa_no_cudnn", "torch", False)]
    if args.prewarmed:
        variants = [("sdpa_prewarmed", "torch", True)]
    try:
        import flash_attn  # noqa: F401
        if not args.split_only:
            variants.append(("flash_attn", "flash_attn", True))
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    ref = (0.1 * rng.standard_normal(5 * SR)).astype(np.float32)
    texts = [WORDS[: int(128 * s / 10)].rstrip() + "." for s in np.linspace(7, 13, 12)]
    out: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "variants": {}}
    for name, backend, cudnn in variants:
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        engine = Engine(EngineConfig(model="F5TTS_v1_Base", files=ModelFiles(), attn_backend=backend,
                                     batch_attn_backend=backend, max_batch=1, device="cuda"))
        engine.warm_up()
        if name == "sdpa_prewarmed":
            began, rss_before = time.perf_counter(), rss_mib()
            planned = engine.prewarm()
            while engine.batcher.idle is not None:
                time.sleep(0.05)
            out["prewarm"] = {"lengths": planned, "seconds": round(time.perf_counter() - began, 1),
                              "gpu_reserved_gib": round(torch.cuda.memory_reserved() / 1024**3, 2),
                              "host_rss_mib_added": round(rss_mib() - rss_before, 1)}
            print("prewarm", out["prewarm"], flush=True)
        voice = engine.reference(ref, REF_TEXT)
        rows = {}
        for label in ("new_length", "cached"):
            rtfs, seconds = [], []
            for i, text in enumerate(texts):
                began = time.perf_counter()
                audio = engine.synthesize(voice, text, SynthesisParams(seed=i))
                took = time.perf_counter() - began
                seconds.append(took)
                rtfs.append(took / (len(audio) / SR))
            rows[label] = {"mean_ms": round(statistics.mean(seconds) * 1000, 1),
                           "mean_rtf": round(statistics.mean(rtfs), 4)}
        if name == "sdpa_default":
            rows["split"] = split_new_length_cost(engine)
        out["variants"][name] = rows
        print(name, rows, flush=True)
        engine.close()
        del engine
        torch.cuda.empty_cache()
    torch.backends.cuda.enable_cudnn_sdp(True)
    print(json.dumps(out, indent=1))
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
