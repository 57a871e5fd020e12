#!/usr/bin/env python3
"""Does a step's time depend on the exact number of frames? (issue 16: cuBLAS and cuDNN pick kernels by shape)

    python bench/probes/frame_lengths.py [--json OUT]      # GPU machine, repo root: bash bench/gpu.sh probe-lengths

The request probe found the engine's 1408-frame step graph at 3.69 ms and a 1406-frame one at 3.40 ms on the
H200 (the matmuls and the attention ran other kernels: request-timeline-h200.json). The engine rounds lengths up
to a multiple of 16 frames. Here: F5TTS_v1_Base size, random weights, fp16, Triton kernels on, the sampler's step
graph (cfg 2) replayed at each length base - d (d = 0..15) for three bases (5, 10 and 15 s of speech with a 5 s
reference), batch 1, and at batch 8 for the middle base: median ms per step of 3 runs of 16 replays. Then one
replay profiled at the middle base and base - 2, batch 1 and 8: the matmul and attention kernels each shape ran.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, probe_arguments, random_engine, report  # noqa: E402
from step_profile import profile_step  # noqa: E402


def main() -> int:
    parser = probe_arguments(__doc__)
    parser.add_argument("--bases", default="944,1408,1872")
    args = parser.parse_args()
    from f5_worker.engine.engine import SynthesisParams

    cuda = args.device == "cuda"
    engine = random_engine(args.model, args.device, max_batch=1)
    out: dict = {**environment(args.device, args.model), "kernels": engine.enable_kernels(), "ms_per_step": {}}
    sampler, dit = engine.sampler, engine.model.transformer
    if not cuda:  # no graphs on the CPU: the smoke run stops here
        report(out, args.json)
        return 0

    def graph_for(batch: int, frames: int):
        with torch.inference_mode():
            sampler._step_inputs_for(32)
            graph = sampler._graph(batch, frames, SynthesisParams.cfg_strength)
            graph.x.normal_(), graph.inputs.normal_()
            steps = graph.step_inputs
            steps.conditionings.copy_(dit.time_conditioning(torch.tensor([0.5], device="cuda", dtype=engine.dtype)))
            steps.sizes.zero_()  # x stays as it is: every replay the same work
            steps.loaded = None
        return graph

    def step_ms(batch: int, frames: int) -> float:
        graph = graph_for(batch, frames)
        runs = []
        for _ in range(4):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(16):
                graph.graph.replay()
            end.record()
            torch.cuda.synchronize()
            runs.append(start.elapsed_time(end) / 16)
        sampler.forget_graphs()
        return round(statistics.median(runs[1:]), 4)

    cases = [(1, int(base)) for base in args.bases.split(",")] + [(8, int(args.bases.split(",")[1]))]
    for batch, base in cases:
        row = {base - d: step_ms(batch, base - d) for d in range(16)}
        out["ms_per_step"][f"batch {batch}, base {base}"] = row
        best = min(row, key=row.get)
        print(f"batch {batch} base {base}: {row[base]} ms at {base}, best {row[best]} at {best};", row, flush=True)
    report(out, args.json)  # the timings kept whatever the profiles do
    middle = int(args.bases.split(",")[1])
    out["kernels_by_shape"] = {}
    try:
        for batch in (1, 8):
            for frames in (middle, middle - 2):
                profile = profile_step(graph_for(batch, frames).graph.replay, cuda)
                sampler.forget_graphs()
                top = [row for row in profile["top"] if row["kind"] in ("matmul", "attention")]
                out["kernels_by_shape"][f"batch {batch}, {frames} frames"] = top
                print(f"batch {batch}, {frames} frames:", [(r["kernel"][:48], r["ms"], r["calls"]) for r in top],
                      flush=True)
    except Exception as error:  # noqa: BLE001  a profiler failure is a result too
        out["kernels_by_shape"]["error"] = f"{type(error).__name__}: {error}"[:300]
    report(out, args.json)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
