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

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, probe_arguments, random_engine, back_to_back_ms, report, step_graph_as_profiled  # noqa: E402
from step_profile import profile_step  # noqa: E402


def main() -> int:
    parser = probe_arguments(__doc__)
    parser.add_argument("--bases", default="944,1408,1872")
    parser.add_argument("--sweeps", default="",
                        help="instead of --bases: BATCH:FIRST-LAST:STEP,... every STEP-th length from FIRST to LAST")
    args = parser.parse_args()

    cuda = args.device == "cuda"
    engine = random_engine(args.model, args.device, max_batch=1)
    out: dict = {**environment(args.device, args.model), "kernels": engine.enable_kernels(), "ms_per_step": {}}
    sampler = engine.sampler
    if not cuda:  # no graphs on the CPU: the smoke run stops here
        report(out, args.json)
        return 0

    def graph_for(batch: int, frames: int):
        return step_graph_as_profiled(engine, batch, frames)

    def step_ms(batch: int, frames: int) -> float:
        ms = back_to_back_ms(graph_for(batch, frames).graph)
        sampler.forget_graphs()
        return ms

    if args.sweeps:
        sweep(args.sweeps, step_ms, graph_for, sampler, out, args.json)
        engine.close()
        return 0
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


def sweep(spec: str, step_ms, graph_for, sampler, out: dict, json_path: str | None) -> None:
    """ms per step at every STEP-th length of each sweep, then the matmul kernels of its fastest and slowest
    lengths per frame (where cuBLAS's choice changes)."""
    out["sweeps"] = {}
    for item in spec.split(","):
        batch, lengths = item.split(":", 1)
        first_last, step = lengths.rsplit(":", 1)
        first, last = (int(n) for n in first_last.split("-"))
        row = {frames: step_ms(int(batch), frames) for frames in range(first, last + 1, int(step))}
        per_frame = {frames: ms / frames for frames, ms in row.items()}
        best, worst = min(per_frame, key=per_frame.get), max(per_frame, key=per_frame.get)
        entry = out["sweeps"][item] = {"ms_per_step": row, "fastest_per_frame": best, "slowest_per_frame": worst}
        print(f"batch {batch}, {first}-{last} every {step}: per frame fastest at {best} "
              f"({row[best]} ms), slowest at {worst} ({row[worst]} ms);", row, flush=True)
        report(out, json_path)
        try:
            for frames in (best, worst):
                profile = profile_step(graph_for(int(batch), frames).graph.replay, True)
                sampler.forget_graphs()
                entry[f"kernels at {frames}"] = [(r["kernel"][:60], r["ms"], r["calls"]) for r in profile["top"]
                                                 if r["kind"] in ("matmul", "attention")]
                print(f"  kernels at {frames}:", entry[f"kernels at {frames}"], flush=True)
        except Exception as error:  # noqa: BLE001  a profiler failure is a result too
            entry["kernels error"] = f"{type(error).__name__}: {error}"[:300]
    report(out, json_path)


if __name__ == "__main__":
    raise SystemExit(main())
