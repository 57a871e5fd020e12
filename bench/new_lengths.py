#!/usr/bin/env python3
"""What a request costs when its length is new (CUDA graph capture) and when it is not, per attention path.

    python bench/new_lengths.py [--split-only | --prewarmed] [--json OUT]
    python bench/new_lengths.py --model tiny-random --device cpu --nfe 2   # smoke run (no CUDA graphs on a CPU)

F5TTS_v1_Base size, random weights, fp16, NFE 32, the whole engine, one request at a time. 12 requests whose
texts give 12 different lengths (7-13 s of speech), then the same 12 again (graphs cached). Paths for
requests of one length: SDPA as torch picks it (cuDNN attention on the H100), SDPA with cuDNN attention
disabled (PyTorch's own flash kernel), and flash-attn's flash_attn_func. "split" (SDPA): the extra time of a
new length in the sampler and in the vocoder. --prewarmed: the engine's background work first, as a serving
start runs it (``start_background``: tuning, then the step graphs of the lengths nearest a typical request),
timed until nothing is pending.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from common import environment, report, sync

SR = 24_000
REF_TEXT = "A reference voice of five seconds or so, read at an even pace."
WORDS = "The worker reads this sentence aloud for the benchmark, at a steady pace, and then it stops there. " * 3


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def split_new_length_cost(engine, config) -> dict:
    """Where a new length's extra time goes: the sampler (graph capture) or the vocoder (new conv shapes)."""
    from f5_worker.engine.sampler import SampleRequest

    def timed(fn):
        sync(engine.device)
        began = time.perf_counter()
        fn()
        sync(engine.device)
        return (time.perf_counter() - began) * 1000

    cond = torch.randn(469, 100, device=engine.device, dtype=engine.dtype)
    text = torch.randint(1, 100, (160,))
    rows = {"sampler_first": [], "sampler_again": [], "vocoder_first": [], "vocoder_again": []}
    for frames in (1520, 1616, 1712, 1808):
        request = [SampleRequest(cond, text, frames, 0)]
        mel = torch.randn(1, 100, frames - 468, device=engine.device)
        for label, fn in (("sampler", lambda: engine.batcher.call(lambda: engine.sampler.sample(request, config))),
                          ("vocoder", lambda: engine.batcher.call(lambda: engine.vocoder.decode(mel)))):
            rows[f"{label}_first"].append(timed(fn))
            rows[f"{label}_again"].append(timed(fn))
    return {k: round(statistics.mean(v), 1) for k, v in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--split-only", action="store_true")
    parser.add_argument("--prewarmed", action="store_true", help="let the engine prepare lengths while idle first")
    parser.add_argument("--model", default="F5TTS_v1_Base", help="tiny-random with --device cpu: a smoke run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--nfe", type=int, default=32)
    args = parser.parse_args()
    from f5_worker.attention_choice import AttentionChoice
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
    from f5_worker.engine.models import ModelFiles
    from f5_worker.engine.sampler import SamplingConfig

    # (name, AttentionChoice backend for both kinds of batch, cuDNN attention inside SDPA)
    variants = [("sdpa_default", "sdpa", True)] if args.split_only else \
        [("sdpa_default", "sdpa", True), ("sdpa_no_cudnn", "sdpa", False)]
    if args.prewarmed:
        variants = [("sdpa_prewarmed", "sdpa", True)]
    try:
        import flash_attn  # noqa: F401
        if not args.split_only:  # with --prewarmed too: flash-attn without prewarming, for comparison
            variants.append(("flash_attn", "flash_attn", True))
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    ref = (0.1 * rng.standard_normal(5 * SR)).astype(np.float32)
    texts = [WORDS[: int(128 * s / 10)].rstrip() + "." for s in np.linspace(7, 13, 12)]
    out: dict = {**environment(args.device, args.model), "nfe": args.nfe, "variants": {}}
    for name, backend, cudnn in variants:
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        why = f"bench/new_lengths.py: {name}"
        engine = Engine(EngineConfig(model=args.model, files=ModelFiles(), attention=AttentionChoice(backend, backend,
                                                                                                     why, why),
                                     max_batch=1, device=args.device))
        engine.warm_up()
        if name == "sdpa_prewarmed":
            began, rss_before = time.perf_counter(), rss_mib()
            planned = engine.prewarm_lengths()
            engine.start_background()  # on a GPU: "tuning" (no cache_dir: measured), then "graphs"
            phases, last = {}, None
            while engine.pending:
                if engine.pending[0] != last:
                    last = engine.pending[0]
                    phases[last] = time.perf_counter()
                time.sleep(0.05)
            ended = time.perf_counter()
            marks = [*phases.values(), ended]
            out["prewarm"] = {"lengths": len(planned), "seconds": round(ended - began, 1),
                              "seconds_per_task": {task: round(marks[i + 1] - marks[i], 1)
                                                   for i, task in enumerate(phases)},
                              "gpu_reserved_gib": round(torch.cuda.memory_reserved() / 1024**3, 2)
                              if args.device.startswith("cuda") else None,
                              "host_rss_mib_added": round(rss_mib() - rss_before, 1)}
            print("prewarm", out["prewarm"], flush=True)
        voice = engine.reference(ref, REF_TEXT)
        rows = {}
        for label in ("new_length", "cached"):
            rtfs, seconds = [], []
            for i, text in enumerate(texts):
                began = time.perf_counter()
                audio = engine.synthesize(voice, text, SynthesisParams(nfe_step=args.nfe, seed=i))
                took = time.perf_counter() - began
                seconds.append(took)
                rtfs.append(took / (len(audio) / SR))
            rows[label] = {"mean_ms": round(statistics.mean(seconds) * 1000, 1),
                           "mean_rtf": round(statistics.mean(rtfs), 4)}
        if name == "sdpa_default":
            rows["split"] = split_new_length_cost(engine, SamplingConfig(steps=args.nfe))
        out["variants"][name] = rows
        print(name, rows, flush=True)
        engine.close()
        del engine
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    torch.backends.cuda.enable_cudnn_sdp(True)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
