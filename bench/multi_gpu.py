#!/usr/bin/env python3
"""Audio per second with one GPU, then with all of them (one engine each, ``EnginePool``), at the best concurrency.

    python bench/multi_gpu.py [--gpus N] [--per-gpu 4,8,16] [--rounds 2] [--json OUT]
    python bench/multi_gpu.py --model tiny-random --device cpu --gpus 2 --nfe 4 --per-gpu 1,2 --rounds 1  # smoke

The setup of BENCHMARKS.md's ``## Throughput`` (``bench/throughput.py``): F5TTS_v1_Base size, random weights,
fp16, NFE 32, cfg 2, sway -1, a 5 s reference, text that F5-TTS's duration rule makes 10 s of speech. The
engines are loaded once, in parallel, as the worker loads them. Then, for each level L of ``--per-gpu``:

- one: L client threads against the first engine alone (``Engine.synthesize``), its batch L;
- all: N * L client threads against the pool (``EnginePool.synthesize``: each request placed by load), each
  engine's batch L;

each client sending requests back to back, two untimed rounds first (graphs, allocations: as throughput.py), then,
all clients released together, ``--rounds`` timed (``throughput.closed_loop``), after each engine's background
start-up work (kernels, tuning, graphs) as serving runs it. audio_s_per_s = audio made / wall time.
``multi_gpu_scaling`` = the best "all" / the best "one" (issue 17's goal: >= 1.9 on two GPUs). ``--device cpu`` makes N CPU engines: a smoke run, not a figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import environment, report, start_as_serving
from throughput import REF_S, REF_TEXT, SR, closed_loop, percentile, text_for


def run_level(target, engines, voice, clients: int, per_engine_batch: int, rounds: int, nfe: int) -> dict:
    """``clients`` threads sending requests back to back to ``target`` (an Engine or the pool)."""
    from f5_worker.engine.engine import SynthesisParams

    for engine in engines:
        engine.batcher.max_batch = per_engine_batch

    def request(i: int, r: int) -> tuple[float, float]:
        began = time.perf_counter()
        audio = target.synthesize(voice, text_for(10.0), SynthesisParams(seed=100_000 * r + i, nfe_step=nfe))
        return time.perf_counter() - began, len(audio) / SR

    sink, wall, batches, busy = closed_loop(request, clients, rounds, lambda: (sum(e.batcher.batches for e in engines),
                                                                              sum(e.batcher.busy_seconds for e in engines)))
    audio = sum(a for _, a in sink)
    latencies = [s for s, _ in sink]
    return {"clients": clients, "batch_per_engine": per_engine_batch, "requests": len(sink),
            "audio_s": round(audio, 1), "wall_s": round(wall, 2), "audio_s_per_s": round(audio / wall, 1),
            "mean_batch": round(len(sink) / max(batches, 1), 1),
            "gpu_threads_busy_share": round(busy / (wall * len(engines)), 3),
            "p50_ms": round(percentile(latencies, 50) * 1000), "p95_ms": round(percentile(latencies, 95) * 1000)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=0, help="engines to use; 0: every visible GPU")
    parser.add_argument("--per-gpu", default="4,8,16", help="concurrent clients per engine, one level each")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--backend", default="sdpa", choices=("sdpa", "flash_attn"), help="both kinds of batch")
    parser.add_argument("--model", default="F5TTS_v1_Base", help="tiny-random with --device cpu: a smoke run")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--json")
    args = parser.parse_args()

    from f5_worker.attention_choice import AttentionChoice
    from f5_worker.engine.engine import EngineConfig
    from f5_worker.engine.models import ModelFiles
    from f5_worker.engine.pool import EnginePool

    if args.device == "cuda":
        n = args.gpus or torch.cuda.device_count()
        devices = [f"cuda:{i}" for i in range(n)]
    else:
        n = args.gpus or 2
        devices = ["cpu"] * n
    if n < 2:
        raise SystemExit(f"multi_gpu.py needs 2 or more engines; {n} {args.device} device(s) here")
    levels = [int(v) for v in args.per_gpu.split(",")]
    config = EngineConfig(model=args.model, files=ModelFiles(), max_batch=max(levels),
                          attention=AttentionChoice(args.backend, args.backend, "--backend", "--backend"))
    began = time.perf_counter()
    pool = EnginePool.load(config, devices)
    load_s = time.perf_counter() - began
    if len(pool.engines) != n:
        raise SystemExit(f"engines failed to load: {pool.info()['engines']}")
    warm_s = pool.warm_up()
    # As serving starts: each engine compiles and checks the Triton kernels, tunes (request lengths, mixed
    # lengths) and captures the graphs of likely lengths in the background; measured once that is done.
    background_s = start_as_serving(pool)
    first = pool.engines[0]
    rng = np.random.default_rng(0)
    voice = pool.reference((0.1 * rng.standard_normal(int(REF_S * SR))).astype(np.float32), REF_TEXT.strip())
    out: dict = {**environment(devices[0], args.model), "gpus": n,
                 "gpu_names": [torch.cuda.get_device_name(d) for d in devices] if args.device == "cuda" else devices,
                 "nfe": args.nfe, "ref_s": REF_S, "output_s": 10.0, "backend": args.backend,
                 "load_s": round(load_s, 2), "warm_up_s": warm_s, "background_s": round(background_s, 2),
                 "kernels": [e.kernels for e in pool.engines], "frame_offsets": [e.frame_offset for e in pool.engines],
                 "one": {}, "all": {}}
    for level in levels:
        out["one"][level] = run_level(first, [first], voice, level, level, args.rounds, args.nfe)
        print("one", level, out["one"][level], flush=True)
    for level in levels:
        out["all"][level * n] = run_level(pool, pool.engines, voice, level * n, level, args.rounds, args.nfe)
        print("all", level * n, out["all"][level * n], flush=True)
    out["best_one_audio_s_per_s"] = max(r["audio_s_per_s"] for r in out["one"].values())
    out["best_all_audio_s_per_s"] = max(r["audio_s_per_s"] for r in out["all"].values())
    out["multi_gpu_scaling"] = round(out["best_all_audio_s_per_s"] / out["best_one_audio_s_per_s"], 3)
    out["batches_per_engine"] = [e.batcher.batches for e in pool.engines]  # all levels, both runs: placement's spread
    report(out, args.json)
    pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
