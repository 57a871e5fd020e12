#!/usr/bin/env python3
"""How long the GPU thread waits between batches in bench/throughput.py's closed loop, from host work alone.
(issue 16: on the H200 a batch of 16 spends ~1.565 s in its steps, the engine ~1.665 s per batch)

    python bench/probes/turnaround.py [--clients 16] [--batch-s 1.565] [--rounds 3] [--json OUT]   # the CPU is enough

The tiny-random engine on the CPU with the worker's own code around the GPU: each client's ``Engine.synthesize``
(text chunks, preparation, submission, waiting, cross-fade), the batcher's gathering window. Only the batch itself
is a stand-in: it sleeps ``--batch-s`` and answers each chunk with the audio the real batch would make (its
length), so the GPU thread's idle time between batches is what the host adds: answered clients preparing their
next requests under the GIL, then the window that waits for the last of them. Reported for a batch cap equal to
the clients (the benchmark's setting) and for half of them (the next batch waits while one runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import report  # noqa: E402
from throughput import SR, closed_loop, reference_voice, text_for  # noqa: E402

HOP = 256


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch-s", type=float, default=1.565, help="the stand-in batch's duration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams

    engine = Engine(EngineConfig(model="tiny-random", device="cpu", max_batch=args.clients))

    def stand_in(chunks):
        time.sleep(args.batch_s)
        return [np.zeros((chunk.frames - chunk.skip) * HOP, dtype=np.float32) for chunk in chunks]

    engine.batcher._run_batch = stand_in  # the GPU's part, and nothing else, replaced
    voice = reference_voice(engine)

    def request(i: int, r: int) -> tuple[float, float]:
        began = time.perf_counter()
        audio = engine.synthesize(voice, text_for(10.0), SynthesisParams(seed=1000 * r + i))
        return time.perf_counter() - began, len(audio) / SR

    out: dict = {"clients": args.clients, "batch_s": args.batch_s, "rounds": args.rounds, "caps": {}}
    for cap in (args.clients, max(args.clients // 2, 1)):
        engine.batcher.max_batch = cap
        sink, wall, batches, busy = closed_loop(request, args.clients, args.rounds,
                                                lambda: (engine.batcher.batches, engine.batcher.busy_seconds))
        row = {"batches": batches, "mean_batch": round(len(sink) / max(batches, 1), 1), "wall_s": round(wall, 3),
               "busy_share": round(busy / wall, 4), "idle_ms_per_batch": round((wall - busy) / max(batches, 1) * 1000, 1),
               "audio_s_per_s": round(sum(a for _, a in sink) / wall, 1)}
        out["caps"][cap] = row
        print(f"batch cap {cap}: {row}", flush=True)
    engine.close()
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
