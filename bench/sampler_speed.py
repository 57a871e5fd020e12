#!/usr/bin/env python3
"""Speed of the worker's sampler (f5_worker.engine.sampler) on a GPU: single requests, batches, options.

    python bench/sampler_speed.py [--compile] [--json OUT]

F5TTS_v1_Base size, random weights, fp16, NFE 32, cfg 2, sway -1, 5 s reference + 10 s to generate
(1406 frames). Sampler only (no vocoder). Median of 5 after 2 warm-ups. Rows:
- single: eager vs CUDA graph (graph capture for a new length timed separately);
- same_length_batch B: B requests of 1406 frames, unmasked, CUDA graph;
- mixed16: 16 requests of 3-15 s, masked, per attention backend;
- with --compile: the same with the velocity function under torch.compile (inductor).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

NFE, REF_FRAMES, FRAMES = 32, 469, 1406


def timed(fn, runs=5):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), torch.cuda.max_memory_allocated() / 1024**3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    from f5_worker.engine import sampler as sampler_module
    from f5_worker.engine.models import ModelFiles, build_model
    from f5_worker.engine.sampler import SampleRequest, Sampler, SamplingConfig

    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    out: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "compile": args.compile,
                 "cudnn_benchmark": args.cudnn_benchmark,
                 "nfe": NFE, "frames": FRAMES, "ref_frames": REF_FRAMES}
    backends = ["torch"]
    try:
        import flash_attn  # noqa: F401
        backends.append("flash_attn")
    except ImportError:
        pass
    model = build_model("F5TTS_v1_Base", ModelFiles(), attn_backend="torch", attn_mask_enabled=False, device="cuda")
    if args.compile:
        t0 = time.perf_counter()
        sampler_module.velocity = torch.compile(sampler_module.velocity, dynamic=True)
        out["compile_wrap_s"] = round(time.perf_counter() - t0, 2)
    config = SamplingConfig(steps=NFE)
    cond = torch.randn(REF_FRAMES, 100, device="cuda", dtype=torch.float16)
    text = torch.randint(0, 2000, (160,))

    # Numerics against F5-TTS untouched (before the Sampler swaps the attention processors), with F5-TTS's
    # own SDPA-vs-flash_attn difference as the yardstick of fp16 tolerance.
    def stock(backend):
        for block in model.transformer.transformer_blocks:
            block.attn.processor.attn_backend = backend
        with torch.inference_mode():
            mel, _ = model.sample(cond=cond[None], text=text[None].cuda(), duration=FRAMES, steps=NFE, cfg_strength=2.0,
                                  sway_sampling_coef=-1.0, seed=0)
        return mel[0, REF_FRAMES:].float()

    def rel(a, b):
        return round(float((a - b).abs().mean() / b.abs().mean()), 5)

    stock_sdpa = stock("torch")
    numerics = {}
    if "flash_attn" in backends:
        numerics["f5_flash_vs_f5_sdpa"] = rel(stock("flash_attn"), stock_sdpa)
        stock("torch")
    ours = Sampler(model, cuda_graphs=True).sample([SampleRequest(cond, text, FRAMES, seed=0)], config)[0][REF_FRAMES:].float()
    numerics["ours_vs_f5_sdpa"] = rel(ours, stock_sdpa)
    out["numerics_mean_rel_diff"] = numerics
    print("numerics", numerics, flush=True)

    def requests(b, frames=FRAMES):
        return [SampleRequest(cond, text, frames, seed=i) for i in range(b)]

    for single in backends:
        sampler = Sampler(model, backends={"single": single, "batch": "torch"}, cuda_graphs=False)
        t0 = time.perf_counter()
        sampler.sample(requests(1), config)
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        eager, _ = timed(lambda: sampler.sample(requests(1), config))
        graphs = Sampler(model, backends={"single": single, "batch": "torch"}, cuda_graphs=True)
        t0 = time.perf_counter()
        graphs.sample(requests(1), config)
        torch.cuda.synchronize()
        first_graph = time.perf_counter() - t0
        graph, peak = timed(lambda: graphs.sample(requests(1), config))
        new_lengths = []
        for extra in range(1, 4):  # a new length each time: capture included
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            graphs.sample(requests(1, FRAMES + extra), config)
            torch.cuda.synchronize()
            new_lengths.append(time.perf_counter() - t0)
        a = sampler.sample(requests(1), config)[0].float()
        b = graphs.sample(requests(1), config)[0].float()
        row = {"first_call_ms": round(first * 1000, 1), "eager_ms": round(eager * 1000, 1),
               "graph_first_call_ms": round(first_graph * 1000, 1), "graph_ms": round(graph * 1000, 1),
               "graph_new_length_ms": round(statistics.median(new_lengths) * 1000, 1),
               "graph_rtf_sampler": round(graph / 10.0, 4), "peak_gib": round(peak, 2),
               "graph_vs_eager_rel_diff": float((a - b).abs().max() / a.abs().max())}
        out[f"single_{single}"] = row
        print(single, row, flush=True)

        rows = {}
        for b in [int(v) for v in args.batches.split(",")] if single == "torch" else []:
            try:
                seconds, peak = timed(lambda: graphs.sample(requests(b), config), runs=3)
            except torch.OutOfMemoryError:
                rows[b] = "out of memory"
                break
            rows[b] = {"ms": round(seconds * 1000, 1), "audio_s_per_gpu_s": round(b * 10.0 / seconds, 1),
                       "peak_gib": round(peak, 2)}
            print(single, "batch", b, rows[b], flush=True)
        out[f"same_length_batch_{single}"] = rows
        del graphs, sampler
        torch.cuda.empty_cache()

    lengths_s = [3 + 12 * i / 15 for i in range(16)]
    mixed = [SampleRequest(cond, text, REF_FRAMES + int(s * 24000 / 256), seed=i) for i, s in enumerate(lengths_s)]
    for batch_backend in backends:
        sampler = Sampler(model, backends={"single": "torch", "batch": batch_backend})
        seconds, peak = timed(lambda: sampler.sample(mixed, config), runs=3)
        out[f"mixed16_{batch_backend}"] = {"ms": round(seconds * 1000, 1), "audio_s": round(sum(lengths_s), 1),
                                          "audio_s_per_gpu_s": round(sum(lengths_s) / seconds, 1),
                                          "peak_gib": round(peak, 2)}
        print("mixed16", batch_backend, out[f"mixed16_{batch_backend}"], flush=True)
    print(json.dumps(out, indent=1))
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
