#!/usr/bin/env python3
"""Time to first audio when streaming, against whole-file latency, for a text of several chunks.

    python bench/stream_latency.py [--model F5TTS_v1_Base] [--device cuda] [--runs 5] [--json OUT]

The engine as `/v1/audio/speech` drives it (``Engine.stream(first_alone=True)``: the first chunk sampled
alone, the rest in the next batch) against ``Engine.synthesize`` (all chunks in one batch, the whole file at
the end), same seed, random weights at the model's real size, a 5 s reference, NFE 32. The HTTP layer adds
the encoding of a piece (pcm: a copy) and a write: not measured here. Each variant runs once untimed first,
so CUDA graphs of its lengths exist (as after the worker's background preparation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

TEXT = " ".join(["The worker streams speech as each chunk of text is done, so a listener hears the first words "
                 "while the rest is still being made."] * 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="F5TTS_v1_Base")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args()

    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
    from f5_worker.engine.models import SAMPLE_RATE

    engine = Engine(EngineConfig(model=args.model, device=args.device))
    engine.warm_up()
    rng = np.random.default_rng(0)
    voice = engine.reference((0.1 * rng.standard_normal(5 * SAMPLE_RATE)).astype(np.float32),
                             "A five second reference voice, spoken clearly.")
    params = SynthesisParams(seed=1, nfe_step=args.nfe)
    chunks = engine.chunks(voice, TEXT, params.speed)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def streamed() -> tuple[float, float, float]:
        began = time.perf_counter()
        pieces = engine.stream(voice, TEXT, params, first_alone=True)
        first = next(pieces)
        sync()
        first_s = time.perf_counter() - began
        samples = len(first) + sum(len(p) for p in pieces)
        return first_s, time.perf_counter() - began, samples / SAMPLE_RATE

    def whole() -> tuple[float, float]:
        began = time.perf_counter()
        audio = engine.synthesize(voice, TEXT, params)
        return time.perf_counter() - began, len(audio) / SAMPLE_RATE

    streamed(), whole()  # graphs of these lengths, kernel selection
    stream_runs = [streamed() for _ in range(args.runs)]
    whole_runs = [whole() for _ in range(args.runs)]
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "model": args.model, "weights": "random", "nfe": args.nfe,
        "chunks": len(chunks), "audio_s": round(whole_runs[0][1], 2), "runs": args.runs,
        "stream_first_audio_ms": round(statistics.median(r[0] for r in stream_runs) * 1000, 1),
        "stream_all_ms": round(statistics.median(r[1] for r in stream_runs) * 1000, 1),
        "whole_file_ms": round(statistics.median(r[0] for r in whole_runs) * 1000, 1),
        "values": {"stream": [[round(v, 4) for v in r] for r in stream_runs],
                   "whole": [[round(v, 4) for v in r] for r in whole_runs]},
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
