#!/usr/bin/env python3
"""Would CUDA graphs pay for the two eager parts of a request around its step graphs? (issue 16, one request)

    python bench/probes/prelude_graphs.py [--json OUT]      # GPU machine, repo root: bash bench/gpu.sh probe-prelude

F5TTS_v1_Base size, random weights, fp16, the engine's own modules and one request's shapes (a 5 s reference,
10.2 s of speech, as bench/throughput.py): the text embeddings (``TextEmbedding.both``, before the steps) and
the vocoder (``Vocos.decode``, after them), each eager and replayed from a CUDA graph, median of 20 between two
synchronisations, and the graph's largest difference from the eager result. On the H200 (8d402f9,
bench/results/prelude-graphs-h200.json): text embeddings 1.37 ms eager, 0.51 replayed; vocoder 1.54 and 1.30; both
equal to the eager results. Both now replay graphs in the engine (the text embeddings in the sampler's prelude
graph; a lone request's vocoder, engine.graphs). On the CPU (a smoke run) only the eager parts run.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, probe_arguments, random_engine, report  # noqa: E402
from throughput import reference_voice, text_for  # noqa: E402


def main() -> int:
    args = probe_arguments(__doc__).parse_args()
    from f5_worker.engine.engine import SynthesisParams

    cuda = args.device == "cuda"
    engine = random_engine(args.model, args.device, max_batch=1)
    voice = reference_voice(engine)
    chunk = engine._prepare(voice, text_for(10.0), SynthesisParams(seed=0), seed=0)
    dit, device, dtype = engine.model.transformer, engine.device, engine.dtype
    ids = chunk.text[None].to(device)
    mel = torch.randn(1, 100, chunk.frames - chunk.skip, generator=torch.Generator().manual_seed(0)).to(device)
    parts = {"text embeddings": (lambda: dit.text_embed.both(ids, chunk.frames)),
             "vocoder": (lambda: engine.vocoder.decode(mel))}
    out: dict = {**environment(args.device, args.model), "frames": chunk.frames,
                 "generated_frames": chunk.frames - chunk.skip, "dtype": str(dtype), "parts": {}}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def median_ms(fn, n=20) -> float:
        fn()
        times = []
        for _ in range(n):
            sync()
            began = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - began)
        return round(statistics.median(times) * 1000, 3)

    with torch.inference_mode():
        for name, fn in parts.items():
            row = {"eager_ms": median_ms(fn)}
            if cuda:
                try:
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        expected = fn()
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph, stream=stream):
                            captured = fn()
                    torch.cuda.current_stream().wait_stream(stream)
                    row["graph_ms"] = median_ms(graph.replay)
                    graph.replay()
                    pairs = zip(captured if isinstance(captured, tuple) else (captured,),
                                expected if isinstance(expected, tuple) else (expected,))
                    row["graph_vs_eager_max_abs_diff"] = max(float((c.float() - e.float()).abs().max()) for c, e in pairs)
                except Exception as error:  # noqa: BLE001  a part that cannot be captured is a result too
                    row["graph_error"] = f"{type(error).__name__}: {error}"[:300]
            out["parts"][name] = row
            print(name, row, flush=True)
    report(out, args.json)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
