#!/usr/bin/env python3
# RECORD, NO LONGER RUNS: written for and run against the engine of commit 2a1a2c9 (2026-11-24; result
# bench/results/step-probe-h100.json, committed in 050f9d8). It drives F5-TTS's own DiT API (text=, cfg_infer=,
# cache=, clear_cache, attention processors), which the worker's own DiT (b984391) does not have: check out
# 2a1a2c9 to rerun it as it was, or port it to DiT.forward(x, cond, text_cond, text_uncond, time, mask, cfg).
"""Where does a sampling step's time go, and what would batching and CUDA graphs buy? (F5TTS_v1_Base, H100)

    python bench/probes/gpu_step_probe.py --json OUT

Random weights at the real size, fp16, a 5 s reference and 10 s to generate (1406 frames). Measures:
- one DiT step (CFG pair) eagerly: wall time vs GPU time (CUDA events), and the top kernels;
- the same step replayed from a CUDA graph, the cost of capturing one, and the output difference;
- steps of B same-length requests (2B sequences), SDPA vs flash_attn, eager;
- host memory after many CUDA calls made each from a new thread vs all from one thread
  (infer_batch_process makes a new ThreadPoolExecutor, so a new thread, for every call).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import time

import torch

SR, HOP = 24_000, 256


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def gpu_ms(fn, runs=10) -> tuple[float, float]:
    """(median wall ms, median GPU ms) of fn."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    walls, gpus = [], []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1000)
        gpus.append(start.elapsed_time(end))
    return round(statistics.median(walls), 3), round(statistics.median(gpus), 3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    from f5_worker.engine.models import ModelFiles, build_model

    out: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    try:
        import flash_attn  # noqa: F401
        backends = ["torch", "flash_attn"]
    except ImportError:
        backends = ["torch"]
    model = build_model("F5TTS_v1_Base", ModelFiles(), attn_backend="torch", attn_mask_enabled=False, device="cuda")
    dit = model.transformer
    n = 1406
    text = torch.randint(0, 2000, (1, 160), device="cuda")

    def inputs(b, frames):
        x = torch.randn(b, frames, 100, device="cuda", dtype=torch.float16)
        cond = torch.randn(b, frames, 100, device="cuda", dtype=torch.float16)
        return x, cond, text.repeat(b, 1)

    def set_backend(name):
        for block in dit.transformer_blocks:
            block.attn.processor.attn_backend = name

    with torch.inference_mode():
        x, cond, txt = inputs(1, n)
        t = torch.tensor(0.5, device="cuda", dtype=torch.float16)
        step = lambda: dit(x=x, cond=cond, text=txt, time=t, cfg_infer=True, cache=True)  # noqa: E731
        step()
        out["eager_step"] = dict(zip(("wall_ms", "gpu_ms"), gpu_ms(step)))
        print("eager", out["eager_step"], flush=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
        print(table, flush=True)
        out["profile_top"] = table.splitlines()[:32]
        ops = prof.key_averages()
        out["cuda_kernels_per_step"] = sum(e.count for e in ops if e.device_type == torch.autograd.DeviceType.CUDA)

        # CUDA graph of one step: static x/cond/time, the cached text embedding stays put.
        def capture(frames):
            sx, sc, st = torch.randn(1, frames, 100, device="cuda", dtype=torch.float16), \
                torch.randn(1, frames, 100, device="cuda", dtype=torch.float16), torch.tensor(0.5, device="cuda", dtype=torch.float16)
            dit.clear_cache()
            dit(x=sx, cond=sc, text=text, time=st, cfg_infer=True, cache=True)  # fills the text cache
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                with torch.cuda.graph(graph, pool=pool):
                    so = dit(x=sx, cond=sc, text=text, time=st, cfg_infer=True, cache=True)
            torch.cuda.current_stream().wait_stream(stream)
            torch.cuda.synchronize()
            return graph, sx, sc, st, so, (time.perf_counter() - t0) * 1000

        pool = torch.cuda.graph_pool_handle()
        for backend in backends:
            set_backend(backend)
            graph, sx, sc, st, so, capture_ms = capture(n)
            sx.copy_(x), sc.copy_(cond)
            dit.clear_cache()
            eager = dit(x=x, cond=cond, text=text, time=t, cfg_infer=True, cache=True).float()
            graph.replay()
            torch.cuda.synchronize()
            diff = ((so.float() - eager).abs().max() / eager.abs().max()).item()
            wall, g = gpu_ms(graph.replay)
            out[f"graph_step_{backend}"] = {"wall_ms": wall, "gpu_ms": g, "first_capture_ms": round(capture_ms, 1),
                                            "rel_max_diff_vs_eager": diff}
            _, *_rest, capture2 = capture(n + 7)
            out[f"graph_step_{backend}"]["capture_new_length_ms"] = round(capture2, 1)
            _, *_rest, capture3 = capture(n + 700)
            out[f"graph_step_{backend}"]["capture_2106_frames_ms"] = round(capture3, 1)
            print(backend, out[f"graph_step_{backend}"], flush=True)
            dit.clear_cache()
        out["graph_pool_mem_gib"] = round(torch.cuda.memory_reserved() / 1024**3, 2)

        # Batches of same-length requests: eager, per backend.
        out["batch_same_length"] = {}
        for backend in backends:
            set_backend(backend)
            rows = {}
            for b in (1, 2, 4, 8, 16, 32, 64):
                dit.clear_cache()
                xb, cb, tb = inputs(b, n)
                fn = lambda: dit(x=xb, cond=cb, text=tb, time=t, cfg_infer=True, cache=True)  # noqa: E731
                wall, g = gpu_ms(fn, runs=5)
                rows[b] = {"wall_ms": wall, "gpu_ms": g,
                           "audio_s_per_gpu_s_sampler_only": round(b * 10.0 / (32 * wall / 1000), 1)}
                print(backend, b, rows[b], flush=True)
                del xb, cb, tb
            out["batch_same_length"][backend] = rows
            dit.clear_cache()
        set_backend("torch")

    # Host memory: CUDA work from a new thread each time vs from one thread.
    a = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)

    def work():
        with torch.inference_mode():
            (a @ a).sum().item()

    for name, run in [("same_thread", work), ("new_thread_each", lambda: (th := threading.Thread(target=work), th.start(), th.join()))]:
        for _ in range(5):
            run()
        gc.collect()
        before = rss_mib()
        for _ in range(100):
            run()
        gc.collect()
        out[f"rss_growth_mib_per_100_calls_{name}"] = round(rss_mib() - before, 1)
        print(name, out[f"rss_growth_mib_per_100_calls_{name}"], flush=True)

    print(json.dumps({k: v for k, v in out.items() if k != "profile_top"}, indent=1))
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
