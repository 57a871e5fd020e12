#!/usr/bin/env python3
"""Throughput of the worker's engine on a GPU: one request alone, then N concurrent clients.

    python bench/throughput.py [--concurrency 1,2,4,8,16,32,64] [--rounds 2] [--batch-backend torch|flash_attn]
                               [--lengths same|mixed] [--json OUT]

F5TTS_v1_Base size, random weights (speed does not depend on weight values; the audio is noise), fp16,
NFE 32, cfg 2, sway -1; a 5 s reference and text that F5-TTS's duration rule makes 10 s of speech
("mixed": 6-14 s). The whole engine path runs: chunk preparation, the batcher, the sampler, the vocoder; first
the engine does what a serving start does in the background (Triton kernels checked; request lengths, mixed-length
policy measured; graphs of likely lengths captured: --no-tune skips the last three), then nothing runs beside it.

- single_rtf: median seconds per request / seconds of audio, one request at a time (5 runs after warm-up);
- per concurrency N: N client threads each send two untimed requests, then --rounds timed ones, back to back
  without stopping (the untimed ones: CUDA graphs and allocations for the batch shapes; after one request
  alone the batcher starts the next job at once, so a first round of N clients runs as 1 + (N - 1), and the
  batch of N comes in the second); audio_s_per_gpu_s = audio of the timed requests / the time from the first
  timed request's start to the last one's end (the GPU serves only this process); p50/p95 request latency.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import torch
from common import GpuClocks, report, start_as_serving

UNTIMED_ROUNDS = 2


def closed_loop(request, clients: int, rounds: int,
                counters) -> tuple[list[tuple[float, float]], float, int, float]:
    """``clients`` threads, each calling ``request(client, round)`` -> (latency s, audio s) back to back:
    ``UNTIMED_ROUNDS`` untimed, then, once every client has finished those, ``rounds`` timed, released together.
    Returns the timed (latency, audio) pairs, the seconds from the release to the last timed request's end, and
    the batches run and the seconds spent running them meanwhile (``counters()``: the batchers' ``batches`` and
    ``busy_seconds``, summed). The release makes the window hold timed work only: clients that fall into groups
    (two groups of 8 alternating their batches, say) would otherwise have one group's untimed batch inside the
    other's timed window (58.2 s/GPU-s for 92.2 of work, at c9985e2)."""
    timed: list[tuple[float, float]] = []
    released: list[tuple[float, tuple[int, float]]] = []  # (when, counters) at the release
    ends: list[float] = []
    lock = threading.Lock()
    release = threading.Barrier(clients, action=lambda: released.append((time.perf_counter(), counters())))

    def client(i: int) -> None:
        for r in range(UNTIMED_ROUNDS):
            request(i, r)
        release.wait()
        for r in range(UNTIMED_ROUNDS, UNTIMED_ROUNDS + rounds):
            latency, audio = request(i, r)
            with lock:
                timed.append((latency, audio))
                ends.append(time.perf_counter())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    began, (batches, busy) = released[0]
    batches_now, busy_now = counters()
    return timed, max(ends) - began, batches_now - batches, busy_now - busy


SR = 24_000
REF_S = 5.0
REF_TEXT = "A reference voice of five seconds or so, read at an even pace. "  # 64 bytes
# F5-TTS's duration rule: generated frames = reference frames * len(text) / len(ref_text); 128 bytes -> ~10 s
TEXT_10S = "The worker reads this sentence aloud for the benchmark, at a steady pace, and then it stops there."
TEXT_10S += " " * (128 - len(TEXT_10S))


def text_for(seconds: float) -> str:
    words = (TEXT_10S.strip() + " ") * 3
    n = int(round(len(TEXT_10S) * seconds / 10.0))
    return words[:n].rstrip() + "."


def reference_voice(engine):
    """The benchmarks' reference: REF_S seconds of seeded noise, with REF_TEXT as what it says."""
    rng = np.random.default_rng(0)
    return engine.reference((0.1 * rng.standard_normal(int(REF_S * SR))).astype(np.float32), REF_TEXT.strip())


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nfe", type=int, default=32, help="steps per request: 32 (default), or EPSS's 7 or 16")
    parser.add_argument("--single-backend", default="sdpa", choices=("sdpa", "flash_attn", "fa4"),
                        help="fa4: FlashAttention-4 (flash-attn-4 importable: f5_worker.fa4.make_importable is called)")
    parser.add_argument("--batch-backend", default="sdpa", choices=("sdpa", "flash_attn"))
    parser.add_argument("--lengths", choices=("same", "mixed"), default="same")
    parser.add_argument("--max-batch", type=int, default=0,
                        help="batch at most this many (default: as many as there are clients); fewer than the "
                             "clients keeps a batch waiting while one runs, as a worker taking more jobs than it batches")
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--kernels", choices=("triton", "pytorch"), default="triton",
                        help="the engine's Triton kernels (compiled and checked first, as serving does) or PyTorch's only")
    parser.add_argument("--no-tune", action="store_true",
                        help="skip what a serving engine measures first (request lengths, mixed-length policy) and the "
                             "graphs it prepares")
    parser.add_argument("--model", default="F5TTS_v1_Base", help="tiny-random with --device cpu: a smoke run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json")
    args = parser.parse_args()

    from f5_worker.attention_choice import AttentionChoice
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
    from f5_worker.engine.models import ModelFiles

    levels = [int(v) for v in args.concurrency.split(",")]
    if args.single_backend == "fa4":
        from f5_worker import fa4

        fa4.make_importable()
    attention = AttentionChoice(args.single_backend, args.batch_backend, "--single-backend", "--batch-backend")
    engine = Engine(EngineConfig(model=args.model, files=ModelFiles(), attention=attention, max_batch=max(levels),
                                 device=args.device, cuda_graphs=not args.no_graphs, kernels=args.kernels == "triton"))
    engine.warm_up()
    kernels = engine.enable_kernels()
    print("kernels:", kernels, flush=True)
    if not args.no_tune:  # as a serving start measures and prepares them; then no more background work
        start_as_serving(engine)
    voice = reference_voice(engine)
    cuda = args.device == "cuda"
    out: dict = {"gpu": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "model": args.model,
                 "weights": "random", "nfe": args.nfe, "ref_s": REF_S, "lengths": args.lengths,
                 "single_backend": args.single_backend, "batch_backend": args.batch_backend,
                 "cuda_graphs": not args.no_graphs, "kernels": kernels, "mixed_lengths": engine.mixed_policy,
                 "frame_bucket": engine.frame_bucket, "frame_offset": engine.frame_offset, "levels": {}}

    def synth(seed: int, seconds: float = 10.0) -> tuple[float, float]:
        began = time.perf_counter()
        audio = engine.synthesize(voice, text_for(seconds), SynthesisParams(seed=seed, nfe_step=args.nfe))
        return time.perf_counter() - began, len(audio) / SR

    for _ in range(2):
        synth(0)
    runs = [synth(i) for i in range(5)]
    latency = statistics.median(r[0] for r in runs)
    audio_s = runs[0][1]
    out["single"] = {"latency_ms": round(latency * 1000, 1), "audio_s": round(audio_s, 2),
                     "rtf": round(latency / audio_s, 4)}
    print("single", out["single"], flush=True)
    # Where one request's time goes outside the sampler: preparing the chunk (CPU), the batch on the GPU
    # thread (reference mel, text embedding, sampling, vocoder, copy back), and the rest (hand-offs, window).
    chunk = engine._prepare(voice, text_for(10.0), SynthesisParams(seed=0, nfe_step=args.nfe), seed=0)

    def median_ms(fn, n=5):
        fn()
        return round(statistics.median(common_time(fn) for _ in range(n)) * 1000, 2)

    def common_time(fn):
        began = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - began

    out["single_breakdown_ms"] = {
        "prepare": median_ms(lambda: engine._prepare(voice, text_for(10.0), SynthesisParams(seed=0, nfe_step=args.nfe), 0)),
        "batch_on_gpu_thread": median_ms(lambda: engine.batcher.call(lambda: engine._run_batch([chunk]))),
        "whole_request": round(latency * 1000, 2),
    }
    print("single_breakdown_ms", out["single_breakdown_ms"], flush=True)

    for level in levels:
        engine.batcher.max_batch = min(level, args.max_batch or level)
        lengths = [10.0] * level if args.lengths == "same" else list(np.linspace(6, 14, level)) if level > 1 else [10.0]

        with GpuClocks() as clocks:  # (from the untimed rounds on: the timed window is most of it)
            sink, wall, batches, busy = closed_loop(lambda i, r: synth(1000 * level + 100 * r + i, lengths[i]), level,
                                                    args.rounds,
                                                    lambda: (engine.batcher.batches, engine.batcher.busy_seconds))
        latencies = [s for s, _ in sink]
        audio = sum(a for _, a in sink)
        row = {"requests": len(sink), "audio_s": round(audio, 1), "wall_s": round(wall, 2),
               "audio_s_per_gpu_s": round(audio / wall, 1), "mean_batch": round(len(sink) / max(batches, 1), 1),
               # the share of the window the GPU thread spent in batches: the rest it waited for jobs
               "gpu_thread_busy_share": round(busy / wall, 3), "gpu_clocks": clocks.result,
               "p50_ms": round(percentile(latencies, 50) * 1000), "p95_ms": round(percentile(latencies, 95) * 1000),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 2) if cuda else None,
               "rss_mib": round(rss_mib(), 1)}
        out["levels"][level] = row
        print(level, row, flush=True)
    out["requests_total"] = sum(r["requests"] for r in out["levels"].values())
    out["best_audio_s_per_gpu_s"] = max(r["audio_s_per_gpu_s"] for r in out["levels"].values())
    report(out, args.json)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
