#!/usr/bin/env python3
"""Speed of the worker's sampler (f5_worker.engine.sampler) on a GPU: single requests, batches, options.

    python bench/sampler_speed.py [--compile] [--cudnn-benchmark] [--batches 1,2,4,8,16,32,64] [--json OUT]
    python bench/sampler_speed.py --model tiny-random --device cpu --nfe 2 --batches 1,2 --runs 1 --mixed 4  # smoke

F5TTS_v1_Base size, random weights, the serving dtype (fp16 on the GPU), NFE 32, cfg 2, sway -1, 5 s
reference + 10 s to generate (1406 frames). Sampler only (no vocoder). Median of --runs (5) after 2 warm-ups.
- numerics: mean relative difference of the generated mel from F5-TTS's own CFM.sample with SDPA (the same
  weights through tests/lib/support/f5_reference.py's cfm_like, same seed), F5-TTS's own flash-attn path
  against its SDPA path as the yardstick of fp16 rounding, and both against F5-TTS in float32, averaged
  over --numerics-seeds requests (--no-numerics: skip, F5-TTS not needed);
- single: eager vs CUDA graph (graph capture for a new length timed separately), per attention backend;
- same_length_batch B: B requests of 1406 frames, unmasked, CUDA graph;
- mixed16: 16 requests of 3-15 s, masked, per attention backend (--mixed N: N requests);
- with --compile: the same with the velocity function under torch.compile (inductor);
- with --kernels: the same with the engine's Triton kernels (``DiT.use_kernels``), numerics included;
- with --fa4: the numerics also for ours attending with FlashAttention-4 (``ours_fa4_vs_f5_sdpa``: the worker's
  path once its background check has passed; flash-attn-4 importable, `source bench/gpu_env.sh flash fa4`).
flash-attn runs where it imports (on the GPU machine: `source bench/gpu_env.sh flash`). On the CPU there are
no CUDA graphs: the "graph" rows run eagerly.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import common
import torch
from common import environment, f5_reference, flash_attn_available, mean_rel_diff

REF_FRAMES, FRAMES = 469, 1406


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--kernels", action="store_true", help="the engine's Triton kernels (checked first)")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--fa4", action="store_true", help="numerics of ours with FlashAttention-4 too")
    parser.add_argument("--no-numerics", action="store_true", help="skip the comparison with F5-TTS's CFM.sample")
    parser.add_argument("--numerics-seeds", type=int, default=4, help="requests (seeds) the comparison averages over")
    parser.add_argument("--model", default="F5TTS_v1_Base", help="tiny-random with --device cpu: a smoke run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mixed", type=int, default=16, help="requests in the mixed-length batch")
    parser.add_argument("--json")
    args = parser.parse_args()
    device, runs = args.device, args.runs
    cuda = device.startswith("cuda")
    from f5_worker.engine import sampler as sampler_module
    from f5_worker.engine.models import ModelFiles, build_model
    from f5_worker.engine.sampler import SampleRequest, Sampler, SamplingConfig

    def timed(fn, n=runs):
        return common.timed(fn, n, device)

    def clock(fn) -> float:
        """Seconds of one call, nothing before it (a first call, a capture)."""
        common.sync(device)
        began = time.perf_counter()
        fn()
        common.sync(device)
        return time.perf_counter() - began

    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    out: dict = {**environment(device, args.model), "compile": args.compile, "kernels": args.kernels,
                 "fa4": args.fa4,
                 "cudnn_benchmark": args.cudnn_benchmark,
                 "nfe": args.nfe, "frames": FRAMES, "ref_frames": REF_FRAMES, "runs": runs}
    backends = ["torch"] + (["flash_attn"] if flash_attn_available() else [])
    if args.fa4:
        from f5_worker import fa4

        fa4.make_importable()
    model = build_model(args.model, ModelFiles(), device=device)
    dtype = next(model.parameters()).dtype
    if args.kernels:
        from f5_worker.engine.nn import kernels

        out["kernels_check"] = kernels.check(model.transformer)
        model.transformer.use_kernels(True)
    config = SamplingConfig(steps=args.nfe)
    generator = torch.Generator().manual_seed(0)
    cond = torch.randn(REF_FRAMES, 100, generator=generator).to(device=device, dtype=dtype)
    text = torch.randint(0, 2000, (160,), generator=generator)

    def requests(b, frames=FRAMES):
        return [SampleRequest(cond, text, frames, seed=i) for i in range(b)]

    if not args.no_numerics:
        # Against F5-TTS's own CFM.sample with the same weights and seed; its flash-attn path against its SDPA
        # path is the yardstick of fp16 rounding. Before torch.compile wraps anything.
        f5 = f5_reference()
        cfm = f5.cfm_like(model)

        def stock(backend, seed):
            for block in cfm.transformer.transformer_blocks:
                block.attn.processor.attn_backend = backend
            with torch.inference_mode():
                mel, _ = cfm.sample(cond=cond[None].to(next(cfm.parameters()).dtype), text=text[None].to(device),
                                    duration=FRAMES, steps=args.nfe, cfg_strength=config.cfg_strength,
                                    sway_sampling_coef=config.sway_sampling_coef, seed=seed)
            return mel[0, REF_FRAMES:].float()

        # Over several seeds: one request's difference is one draw of how fp16 rounding grows over 32 steps.
        seeds = range(args.numerics_seeds)
        stock_sdpa = [stock("torch", seed) for seed in seeds]
        def ours_with(single):
            sampler = Sampler(model, backends={"single": single, "batch": "torch"})
            return [sampler.sample([SampleRequest(cond, text, FRAMES, seed=seed)], config)[0][REF_FRAMES:].float()
                    for seed in seeds]

        ours = ours_with("torch")
        diffs = {"ours_vs_f5_sdpa": [mean_rel_diff(o, r) for o, r in zip(ours, stock_sdpa)]}
        if args.fa4:
            diffs["ours_fa4_vs_f5_sdpa"] = [mean_rel_diff(o, r) for o, r in zip(ours_with("fa4"), stock_sdpa)]
        if "flash_attn" in backends:
            diffs["f5_flash_vs_f5_sdpa"] = [mean_rel_diff(stock("flash_attn", seed), r) for seed, r in zip(seeds, stock_sdpa)]
        if dtype != torch.float32:  # the same computation in float32: which fp16 path stays nearer to it
            cfm.float()
            exact = [stock("torch", seed) for seed in seeds]
            diffs["ours_vs_f5_fp32"] = [mean_rel_diff(o, e) for o, e in zip(ours, exact)]
            diffs["f5_sdpa_vs_f5_fp32"] = [mean_rel_diff(r, e) for r, e in zip(stock_sdpa, exact)]
        numerics = {name: float(f"{statistics.mean(values):.3g}") for name, values in diffs.items()}
        out["numerics_mean_rel_diff"] = numerics
        out["numerics_per_seed"] = {name: [float(f"{v:.3g}") for v in values] for name, values in diffs.items()}
        print("numerics", numerics, flush=True)
        del cfm, stock_sdpa, ours
        gc.collect()

    if args.compile:
        t0 = time.perf_counter()
        sampler_module.velocity = torch.compile(sampler_module.velocity, dynamic=True)  # the eager loop's
        sampler_module.flow_rows = torch.compile(sampler_module.flow_rows, dynamic=True)  # the step graphs'
        out["compile_wrap_s"] = round(time.perf_counter() - t0, 2)

    for single in backends:
        sampler = Sampler(model, backends={"single": single, "batch": "torch"}, cuda_graphs=False)
        first = clock(lambda: sampler.sample(requests(1), config))
        eager, _ = timed(lambda: sampler.sample(requests(1), config))
        graphs = Sampler(model, backends={"single": single, "batch": "torch"}, cuda_graphs=True)
        first_graph = clock(lambda: graphs.sample(requests(1), config))
        graph, peak = timed(lambda: graphs.sample(requests(1), config))
        # a new length each time: capture included
        new_lengths = [clock(lambda: graphs.sample(requests(1, FRAMES + extra), config)) for extra in range(1, 4)]
        a = sampler.sample(requests(1), config)[0].float()
        b = graphs.sample(requests(1), config)[0].float()
        row = {"first_call_ms": round(first * 1000, 1), "eager_ms": round(eager * 1000, 1),
               "graph_first_call_ms": round(first_graph * 1000, 1), "graph_ms": round(graph * 1000, 1),
               "graph_new_length_ms": round(statistics.median(new_lengths) * 1000, 1),
               "graph_rtf_sampler": round(graph / 10.0, 4), "peak_gib": peak,
               "graph_vs_eager_rel_diff": float((a - b).abs().max() / a.abs().max())}
        out[f"single_{single}"] = row
        print(single, row, flush=True)

        rows = {}
        for b in [int(v) for v in args.batches.split(",")] if single == "torch" else []:
            try:
                seconds, peak = timed(lambda: graphs.sample(requests(b), config), min(3, runs))
            except torch.OutOfMemoryError:
                rows[b] = "out of memory"
                break
            rows[b] = {"ms": round(seconds * 1000, 1), "audio_s_per_gpu_s": round(b * 10.0 / seconds, 1),
                       "peak_gib": peak}
            print(single, "batch", b, rows[b], flush=True)
        out[f"same_length_batch_{single}"] = rows
        del graphs, sampler
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    lengths_s = [3 + 12 * i / max(args.mixed - 1, 1) for i in range(args.mixed)]
    mixed = [SampleRequest(cond, text, REF_FRAMES + int(s * 24000 / 256), seed=i) for i, s in enumerate(lengths_s)]
    for batch_backend in backends:
        sampler = Sampler(model, backends={"single": "torch", "batch": batch_backend})
        seconds, peak = timed(lambda: sampler.sample(mixed, config), min(3, runs))
        key = f"mixed{args.mixed}_{batch_backend}"
        out[key] = {"ms": round(seconds * 1000, 1), "audio_s": round(sum(lengths_s), 1),
                    "audio_s_per_gpu_s": round(sum(lengths_s) / seconds, 1), "peak_gib": peak}
        print(f"mixed{args.mixed}", batch_backend, out[key], flush=True)
    common.report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
