#!/usr/bin/env python3
"""Where a batch's time goes outside its sampling steps, at the benchmark's batch sizes (issue 16: on the H200 a
batch of 16 took ~1.665 s in the engine where its 32 step graphs replay in ~1.565 s; step-profile-fa4).

    python bench/probes/batch_timeline.py [--clients 16] [--fa4] [--json OUT]   # GPU: bash bench/gpu.sh probe-batch
    python bench/probes/batch_timeline.py --model tiny-random --device cpu --clients 2 --rounds 1   # smoke

F5TTS_v1_Base size, random weights, the engine started as serving starts it, then ``--clients`` closed-loop
clients (bench/throughput.py's) sending 10 s requests, ``--rounds`` timed. Two passes:
- plain: the window's wall time per batch, the batcher's time in batches (the rest it waited for jobs), and the
  GPU's SM clock and power over the window (NVML);
- phases: the same with each phase on the batcher's thread timed between two synchronisations (which removes their
  overlap with the CPU): the step graphs (text-embedding prelude + 32 steps), the vocoder, the rest of
  ``sampler.sample`` (inputs laid out, noise, copies), the rest of the batch (reference mel lookup, stacking, the
  copy of the audio to the host), per batch (means over the pass, its untimed rounds included: all warm by then).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import GpuClocks, environment, probe_arguments, report, start_as_serving, timed_phases  # noqa: E402
from throughput import SR, closed_loop, reference_voice, text_for  # noqa: E402


def main() -> int:
    parser = probe_arguments(__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fa4", action="store_true", help="FlashAttention-4 for unmasked batches, as the worker")
    args = parser.parse_args()
    from f5_worker.attention_choice import AttentionChoice
    from f5_worker.engine import sampler as sampler_module
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
    from f5_worker.engine.models import ModelFiles

    if args.fa4:
        from f5_worker import fa4

        fa4.make_importable()
    attention = AttentionChoice("fa4" if args.fa4 else "sdpa", "sdpa", "--fa4", "probe")
    engine = Engine(EngineConfig(model=args.model, files=ModelFiles(), attention=attention, max_batch=args.clients,
                                 device=args.device))
    engine.warm_up()
    out: dict = {**environment(args.device, args.model), "kernels": engine.enable_kernels(), "fa4": args.fa4,
                 "clients": args.clients, "rounds": args.rounds}
    start_as_serving(engine)
    engine.batcher.max_batch = args.clients
    out["frame_offset"] = engine.frame_offset
    voice = reference_voice(engine)

    def request(i: int, r: int) -> tuple[float, float]:
        began = time.perf_counter()
        audio = engine.synthesize(voice, text_for(10.0), SynthesisParams(seed=1000 * r + i))
        return time.perf_counter() - began, len(audio) / SR

    def counters():
        return engine.batcher.batches, engine.batcher.busy_seconds

    def window() -> dict:
        with GpuClocks() as clocks:
            sink, wall, batches, busy = closed_loop(request, args.clients, args.rounds, counters)
        return {"batches": batches, "mean_batch": round(len(sink) / max(batches, 1), 1),
                "ms_per_batch": round(wall / max(batches, 1) * 1000, 1),
                "busy_ms_per_batch": round(busy / max(batches, 1) * 1000, 1),
                "audio_s_per_gpu_s": round(sum(a for _, a in sink) / wall, 1), "gpu_clocks": clocks.result}

    out["plain"] = window()
    print("plain", out["plain"], flush=True)

    patches = [(sampler_module._StepGraph, "run", "step graphs: prelude + steps"), (engine, "_decode", "vocoder"),
               (engine.sampler, "sample", "sampler.sample"), (engine.batcher, "_run_batch", "batch")]
    with timed_phases(patches, args.device) as spent:
        out["phased"] = window()
    batches = max(len(spent["batch"]), 1)
    phases = {name: round(sum(values) / batches * 1000, 2) for name, values in spent.items()}  # ms per batch

    def part(name):
        return phases.get(name, 0.0)

    phases["sampler.sample, rest"] = round(part("sampler.sample") - part("step graphs: prelude + steps"), 2)
    phases["batch, rest"] = round(part("batch") - part("sampler.sample") - part("vocoder"), 2)
    phases["between batches"] = round(out["phased"]["ms_per_batch"] - part("batch"), 2)
    out["phases_ms_per_batch"] = phases
    out["phases_batches"] = {name: len(values) for name, values in spent.items()}
    print("phased", out["phased"], flush=True)
    print("phases (ms per batch, synchronised)", phases, flush=True)
    if spent["step graphs: prelude + steps"]:
        out["step_graphs_ms_median"] = round(statistics.median(spent["step graphs: prelude + steps"]) * 1000, 2)
    report(out, args.json)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
