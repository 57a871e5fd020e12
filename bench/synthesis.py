#!/usr/bin/env python3
"""F5-TTS synthesis speed on a GPU, per attention backend: single requests and mixed-length batches.

    python bench/synthesis.py [--model F5TTS_v1_Base] [--runs 5] [--json OUT]

Random weights at the real size (speed does not depend on weight values; the audio is noise).
fp16, Euler, NFE 32, cfg_strength 2, sway -1, a 5 s reference and 10 s to generate; median of
--runs after 2 warm-ups. Measures, with SDPA (attn_backend "torch") and with flash-attn when it imports:

- sampler: CFM.sample alone (what ../shared/gpu/README.md's baseline measured);
- stock: F5-TTS's own pipeline, utils_infer.infer_batch_process (sampler + vocoder), as F5TTS.infer runs it;
- worker: our Engine.synthesize (its own sampler with CUDA graphs, batcher, vocoder; see bench/throughput.py);
- batch: 16 requests of 3-15 s in one CFM.sample call, attention mask on (what batching needs);
- the physical floor: FLOPs of one synthesis over the measured fp16 matrix rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

SR, HOP = 24_000, 256
REF_S, GEN_S, NFE = 5.0, 10.0, 32


def timed(fn, runs: int) -> tuple[float, float]:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), torch.cuda.max_memory_allocated() / 1024**3


def matmul_tflops() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    seconds, _ = timed(lambda: a @ b, 10)
    return 2 * 8192**3 / seconds / 1e12


def synthesis_flops(arch: dict, frames: int, nfe: int = NFE) -> float:
    """Matrix FLOPs of one synthesis: NFE steps x the DiT on a CFG pair (batch 2) of ``frames`` tokens.

    Per block: q, k, v, out projections 8 n d^2; scores and values 4 n^2 d; feed-forward 4 ff n d^2.
    Plus the input projection, two grouped conv position layers, the text ConvNeXt blocks and the output
    projection. The vocoder (a few GFLOPs) is left out.
    """
    n, d, ff, t = frames, arch["dim"], arch["ff_mult"], arch["text_dim"]
    block = 8 * n * d * d + 4 * n * n * d + 4 * ff * n * d * d
    embed = 2 * n * (2 * 100 + t) * d + 2 * (2 * n * d * (d // 16) * 31) + arch.get("conv_layers", 0) * 8 * n * t * t
    forward = arch["depth"] * block + embed + 2 * n * d * 100
    return float(nfe * 2 * forward)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="F5TTS_v1_Base")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()

    from f5_worker.engine import f5lib
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
    from f5_worker.engine.models import ModelFiles, build_model, build_vocoder, model_arch

    backends = ["torch"]
    try:
        import flash_attn  # noqa: F401  activated by the caller (PYTHONPATH) when verified
        backends.append("flash_attn")
    except ImportError as exc:
        print(f"flash_attn unavailable: {exc}", file=sys.stderr)

    arch = model_arch(args.model)
    results: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "model": args.model,
                     "weights": "random (speed does not depend on weight values)", "nfe": NFE,
                     "ref_s": REF_S, "gen_s": GEN_S, "runs": args.runs, "backends": {}}
    results["matmul_fp16_tflops"] = round(matmul_tflops(), 1)
    rng = np.random.default_rng(0)
    ref = torch.from_numpy((0.1 * rng.standard_normal(int(REF_S * SR))).astype(np.float32))[None]
    ref_text = "This is a reference clip of about five seconds. "
    gen_text = "And this is the sentence the worker is asked to speak, about ten seconds of it, no more and no less."
    ref_frames, gen_frames = int(REF_S * SR) // HOP, int(GEN_S * SR) // HOP
    total_frames = ref_frames + gen_frames
    flops = synthesis_flops(arch, total_frames)
    results["flops_per_synthesis"] = flops
    results["floor_ms"] = round(flops / (results["matmul_fp16_tflops"] * 1e12) * 1000, 2)

    for backend in backends:
        row: dict = {}
        files = ModelFiles()
        model = build_model(args.model, files, attn_backend=backend, attn_mask_enabled=False, device="cuda")
        vocoder = build_vocoder(args.model, files, device="cuda")
        cond = ref.to("cuda")

        def sampler():
            with torch.inference_mode():
                model.sample(cond=cond, text=[ref_text + gen_text], duration=total_frames, steps=NFE,
                             cfg_strength=2.0, sway_sampling_coef=-1.0)

        seconds, peak = timed(sampler, args.runs)
        print(json.dumps({backend: "sampler done"}), flush=True)
        row["sampler"] = {"ms": round(seconds * 1000, 1), "rtf": round(seconds / GEN_S, 4), "peak_gib": round(peak, 2),
                          "vs_floor": round(seconds * 1000 / results["floor_ms"], 1)}

        def stock():
            wave, _, _ = next(f5lib.utils_infer.infer_batch_process(
                (ref, SR), ref_text, [gen_text], model, vocoder, progress=None, nfe_step=NFE, device="cuda",
                fix_duration=REF_S + GEN_S))
            return wave

        seconds, peak = timed(stock, args.runs)
        row["stock_pipeline"] = {"ms": round(seconds * 1000, 1), "rtf": round(seconds / GEN_S, 4), "peak_gib": round(peak, 2)}

        engine = Engine(EngineConfig(args.model, files, backend, device="cuda"))  # the worker's engine, same size
        voice = engine.reference(ref[0].numpy(), ref_text)
        out = {}

        def worker():
            out["audio"] = engine.synthesize(voice, gen_text, SynthesisParams(nfe_step=NFE, seed=0))

        seconds, peak = timed(worker, args.runs)
        audio_s = len(out["audio"]) / SR
        row["worker_pipeline"] = {"ms": round(seconds * 1000, 1), "audio_s": round(audio_s, 2),
                                  "rtf": round(seconds / audio_s, 4), "peak_gib": round(peak, 2)}
        engine.close()
        del model, vocoder, engine
        torch.cuda.empty_cache()

        # Batches of mixed lengths need the attention mask.
        batch_model = build_model(args.model, files, attn_backend=backend, attn_mask_enabled=True, device="cuda")
        lengths_s = np.linspace(3, 15, 16)
        gen_frames_each = (lengths_s * SR / HOP).astype(int)
        durations = torch.tensor(ref_frames + gen_frames_each, device="cuda")
        conds = cond.repeat(16, 1)
        conds_frames = int(REF_S * SR) // HOP + 1  # lens are in mel frames (center padding adds one)
        texts = [ref_text + gen_text[: int(len(gen_text) * s / 15)] for s in lengths_s]

        def batch():
            with torch.inference_mode():
                batch_model.sample(cond=conds, text=texts, duration=durations, steps=NFE, cfg_strength=2.0,
                                   sway_sampling_coef=-1.0, lens=torch.full((16,), conds_frames, device="cuda"))

        seconds, peak = timed(batch, max(2, args.runs // 2))
        row["batch16_mixed"] = {"ms": round(seconds * 1000, 1), "audio_s": round(float(lengths_s.sum()), 1),
                                "audio_s_per_gpu_s": round(float(lengths_s.sum()) / seconds, 1), "peak_gib": round(peak, 2)}
        del batch_model
        torch.cuda.empty_cache()
        results["backends"][backend] = row
        print(json.dumps({backend: row}), flush=True)

    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
