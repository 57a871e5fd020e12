#!/usr/bin/env python3
"""Where one request's time goes in the engine, around the sampling steps (issue 16's single-request RTF).

    python bench/probes/request_timeline.py [--json OUT]      # GPU machine, repo root: bash bench/gpu.sh probe-request

F5TTS_v1_Base size, random weights, fp16, NFE 32, Triton kernels on (as serving runs), a 5 s reference and
10.2 s of speech, as bench/throughput.py. Three views of one request:
- whole request, median of 5, at batcher windows of 5 ms (the default) and 2 ms and 0;
- phases on the batcher's thread, each timed between two synchronisations (median of 5): reference mel,
  text embeddings (on the GPU: in a graph before the step graphs), the step-graph replays, the vocoder, and what remains of the batch;
- the request's step graph alone: 32 replays back to back, and each timed by itself; then in step_profile.py's
  setting, at 1406 frames, and the attention alone at both lengths;
- a profile of one request: GPU kernel time by kernel, and GPU time against wall time.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (environment, probe_arguments, random_engine, report, start_as_serving,  # noqa: E402
                    step_graph_as_profiled, timed_phases)
from throughput import reference_voice, text_for  # noqa: E402


def main() -> int:
    args = probe_arguments(__doc__).parse_args()
    from f5_worker.engine import sampler as sampler_module
    from f5_worker.engine.engine import SynthesisParams

    cuda = args.device == "cuda"
    engine = random_engine(args.model, args.device, max_batch=8)
    engine.warm_up()
    out: dict = {**environment(args.device, args.model), "kernels": engine.enable_kernels()}
    start_as_serving(engine)  # request lengths measured, graphs of likely lengths captured
    out["frame_offset"] = engine.frame_offset
    voice = reference_voice(engine)

    def request(seed=0) -> float:
        began = time.perf_counter()
        engine.synthesize(voice, text_for(10.0), SynthesisParams(seed=seed))
        return time.perf_counter() - began

    for _ in range(3):
        request()
    out["whole_request_ms"] = {}
    for window in (engine.batcher.window_s, 0.002, 0.0):
        engine.batcher.window_s, default = window, engine.batcher.window_s
        out["whole_request_ms"][f"window {window * 1000:g} ms"] = round(
            statistics.median(request(i) for i in range(5)) * 1000, 2)
        engine.batcher.window_s = default
    print("whole request", out["whole_request_ms"], flush=True)

    # Phases, each between two synchronisations (which removes the overlap of CPU launches with GPU work).
    dit = engine.model.transformer
    patches = [(engine.model.mel_spec, "forward", "reference mel"), (dit.text_embed, "both", "text embeddings"),
               (sampler_module._StepGraph, "run", "graphs: text embeddings, 32 steps"), (engine, "_decode", "vocoder"),
               (engine.sampler, "sample", "sampler.sample"), (engine.batcher, "_run_batch", "batch on the GPU thread")]
    with timed_phases(patches, args.device) as spent:
        request(0)
        spent.clear()
        for i in range(5):
            request(i)
    phases = {name: round(statistics.median(values) * 1000, 2) for name, values in spent.items()}
    def part(name):  # 0 for a phase that did not run (no step graphs on the CPU; a voice's mel is computed once)
        return phases.get(name, 0.0)

    phases["sampler.sample, rest"] = round(part("sampler.sample") - part("graphs: text embeddings, 32 steps")
                                           - part("text embeddings"), 2)
    phases["batch, rest"] = round(part("batch on the GPU thread") - part("sampler.sample") - part("vocoder")
                                  - part("reference mel"), 2)
    out["phases_ms"] = phases
    print("phases (ms, synchronised)", phases, flush=True)

    if cuda:
        # The request's own step graph alone: 32 replays back to back (as step_profile.py times a step), then
        # each replay between two events (is any step slower, the first ones for instance?).
        graph = next(reversed(engine.sampler._graphs.values()))  # the most recently used: this request's shape

        def replays(n: int, each: bool) -> list[float]:
            events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1 if each else 2)]
            torch.cuda.synchronize()
            events[0].record()
            for i in range(n):
                graph.graph.replay()
                if each:
                    events[i + 1].record()
            if not each:
                events[1].record()
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(events, events[1:])]

        replays(32, False)
        out["step_graph_alone_ms"] = {"32 back to back": round(replays(32, False)[0], 2),
                                      "each of 32": [round(ms, 3) for ms in replays(32, True)]}
        print("step graph alone", out["step_graph_alone_ms"]["32 back to back"], "ms for 32", flush=True)

        # step_profile.py measured this step at 3.47 ms (1406 frames, every replay at t = 0.5 with size 0, random
        # inputs); the request's replays at ~3.7. The same graph in step_profile's setting, then a 1406-frame graph
        # in it, then the attention alone at both lengths: which of setting, length or kernel makes the difference?
        steps = graph.step_inputs
        saved = steps.conditionings.clone(), steps.sizes.clone()
        with torch.inference_mode():
            steps.conditionings.copy_(dit.time_conditioning(torch.tensor([0.5], device="cuda", dtype=engine.dtype)))
            steps.sizes.zero_()
            setting = {"request's graph, step_profile's setting": round(replays(32, False)[0] / 32, 3)}
            graph = step_graph_as_profiled(engine, 1, 1406)
            replays(8, False)
            setting["1406 frames, step_profile's setting"] = round(replays(32, False)[0] / 32, 3)
            for frames in (1406, 1408):
                q, k, v = (torch.randn(2, frames, 16, 64, device="cuda", dtype=engine.dtype).transpose(1, 2)
                           for _ in range(3))
                for _ in range(3):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
                events[0].record()
                for _ in range(100):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                events[1].record()
                torch.cuda.synchronize()
                setting[f"attention alone, {frames} frames"] = round(events[0].elapsed_time(events[1]) / 100, 4)
            steps.conditionings.copy_(saved[0]), steps.sizes.copy_(saved[1])
            steps.loaded = None
        out["step_ms_by_setting"] = setting
        print("step by setting (ms)", setting, flush=True)

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            began = time.perf_counter()
            request(99)
            wall = time.perf_counter() - began
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for e in kernels:
            by_name[e.name][0] += e.device_time / 1000
            by_name[e.name][1] += 1
        gpu_ms = sum(v[0] for v in by_name.values())
        # GPU idle time between the first kernel and the last: gaps between merged kernel intervals
        spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in kernels)
        gaps, end = [], spans[0][1]
        for start, stop, name in spans[1:]:
            if start > end:
                gaps.append((start - end, name))
            end = max(end, stop)
        gaps.sort(reverse=True)
        out["profile"] = {"wall_ms": round(wall * 1000, 2), "gpu_kernel_ms": round(gpu_ms, 2), "kernels": len(kernels),
                          "gpu_span_ms": round((end - spans[0][0]) / 1000, 2),
                          "gpu_idle_ms": round(sum(g for g, _ in gaps) / 1000, 2),
                          "idle_gaps_over_20us": sum(1 for g, _ in gaps if g > 20),
                          "largest_gaps": [{"us": round(g, 1), "before": name[:80]} for g, name in gaps[:12]],
                          "top": [{"kernel": name[:110], "ms": round(ms, 3), "calls": calls}
                                  for name, (ms, calls) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:40]]}
        print("profile: wall", out["profile"]["wall_ms"], "ms, kernels", out["profile"]["gpu_kernel_ms"], "ms, GPU idle",
              out["profile"]["gpu_idle_ms"], "ms of a", out["profile"]["gpu_span_ms"], "ms span", flush=True)
    report(out, args.json)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
