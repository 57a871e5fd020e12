#!/usr/bin/env python3
"""Does the thread that captures a step graph decide its kernels? (issue 16)

    python bench/probes/capture_context.py [--json OUT]    # GPU machine, repo root: bash bench/gpu.sh probe-context

The request probe timed the engine's own step graph (captured on the batcher's thread) at 3.60-3.65 ms per step
and a graph of the same kind captured on the main thread at 3.40, while probe-lengths (main thread) found no
length much faster than another. cuBLAS keeps a handle, and PyTorch a workspace, per thread and stream, and
cuBLASLt's heuristics see the workspace's size and the operands' alignment. Here: F5TTS_v1_Base size, random
weights, fp16, Triton kernels on; for two lengths, a step graph captured on the main thread, on the batcher's
thread and on a new thread, each replayed from the main thread (median ms per step of 3 runs of 16), with the
matmul kernels one replay ran; then one eager linear of the feed-forward's shape, profiled in each thread.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, probe_arguments, random_engine, back_to_back_ms, report, step_graph_as_profiled  # noqa: E402
from step_profile import device_events, profile_step  # noqa: E402


def on_new_thread(fn):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def main() -> int:
    parser = probe_arguments(__doc__)
    parser.add_argument("--lengths", default="1396,1408")
    args = parser.parse_args()

    cuda = args.device == "cuda"
    engine = random_engine(args.model, args.device, max_batch=1)
    out: dict = {**environment(args.device, args.model), "kernels": engine.enable_kernels(), "graphs": {},
                 "eager_linear": {}}
    sampler = engine.sampler
    if not cuda:  # no graphs on the CPU: the smoke run stops here
        report(out, args.json)
        return 0
    contexts = {"main thread": lambda fn: fn(), "batcher thread": engine.batcher.call, "new thread": on_new_thread}

    for frames in (int(n) for n in args.lengths.split(",")):
        for name, run_in in contexts.items():
            graph = run_in(lambda: step_graph_as_profiled(engine, 1, frames))
            top = [r for r in profile_step(graph.graph.replay, cuda)["top"] if r["kind"] == "matmul"]
            row = {"ms": back_to_back_ms(graph.graph), "matmuls": [(r["kernel"][:60], r["ms"], r["calls"]) for r in top],
                   "x_ptr_mod_256": graph.x.data_ptr() % 256, "inputs_ptr_mod_256": graph.inputs.data_ptr() % 256}
            sampler.forget_graphs()
            out["graphs"][f"{frames} frames, {name}"] = row
            print(f"{frames} frames, captured on the {name}: {row['ms']} ms;", row["matmuls"], flush=True)

    x = torch.randn(2 * 1396, 1024, device="cuda", dtype=torch.float16)
    weight = torch.randn(2048, 1024, device="cuda", dtype=torch.float16)
    bias = torch.randn(2048, device="cuda", dtype=torch.float16)
    for name, run_in in contexts.items():
        def linear():
            for _ in range(3):
                torch.nn.functional.linear(x, weight, bias)
            torch.cuda.synchronize()

        run_in(linear)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            run_in(linear)
        out["eager_linear"][name] = [(k[:70], round(us, 1), n) for k, us, n in device_events(prof)]
        print(f"eager linear on the {name}:", out["eager_linear"][name], flush=True)
    report(out, args.json)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
