#!/usr/bin/env python3
"""Does one failed CUDA-graph capture end the captures into its memory pool? (engine.graphs.capture)

    python bench/probes/capture_failure.py [--json OUT]   # GPU machine, repo root: bash bench/gpu.sh probe-capture-failure

A capture that something invalidates (here a host read of a GPU value inside it, as cuDNN's variable-length
attention did by building its graph inside the capture) raises; PyTorch then leaves the allocator recording to
the capture's pool, and the next capture into that pool fails ("already recording to mempool_id"). Three ways
below, each on a pool of its own: through ``engine.graphs.capture`` (whose ``GraphPool`` moves on to a fresh
pool after a failure), through ``torch.cuda.graph`` with the recording ended by hand after the failure
(``torch._C._cuda_endAllocateToPool``: it returns, and on torch 2.11 the next capture fails all the same), and
through ``torch.cuda.graph`` alone. After the failure, a good part is captured into the same pool and replayed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, report  # noqa: E402

from f5_worker.engine import graphs  # noqa: E402


def attempt(capture_one, pool) -> dict:
    x = torch.arange(4.0, device="cuda")
    out = torch.empty_like(x)

    def invalid():
        out.copy_(x * 2)
        float(out.sum())  # a host read: not allowed while capturing

    def good():
        out.copy_(x * 3)

    row = {}
    try:
        capture_one(invalid, pool)
        row["invalid_capture"] = "captured (unexpected)"
    except Exception as error:  # noqa: BLE001  the expected outcome, recorded
        row["invalid_capture"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    try:
        graph = capture_one(good, pool)
        x.copy_(torch.arange(10.0, 14.0, device="cuda"))
        graph.replay()
        torch.cuda.synchronize()
        row["next_capture"] = "ok" if torch.equal(out, x * 3) else f"replayed wrong values: {out.tolist()}"
    except Exception as error:  # noqa: BLE001
        row["next_capture"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    return row


def with_engine_capture(part, pool):
    return graphs.capture([part], "cuda", pool)[0]


def with_torch_alone(part, pool):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        part()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=stream, capture_error_mode="thread_local"):
            part()
    torch.cuda.current_stream().wait_stream(stream)
    return graph


def ending_it_here(part, pool):
    """torch.cuda.graph, and after a failure the end of the pool's recording called here, its outcome noted."""
    try:
        return with_torch_alone(part, pool)
    except Exception:
        try:
            torch._C._cuda_endAllocateToPool(torch.cuda.current_device(), pool)
            ENDED.append("returned")
        except Exception as error:  # noqa: BLE001  the outcome is the result
            ENDED.append(f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
        raise


ENDED: list[str] = []


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a GPU: CUDA graphs")
    out = {**environment("cuda", "none (a 4-element tensor)")}
    for name, capture_one, pool in (
            ("engine.graphs.capture (GraphPool)", with_engine_capture, graphs.GraphPool()),
            ("torch.cuda.graph, _cuda_endAllocateToPool after", ending_it_here, torch.cuda.graph_pool_handle()),
            ("torch.cuda.graph alone", with_torch_alone, torch.cuda.graph_pool_handle())):
        out[name] = attempt(capture_one, pool)
        print(name, out[name], flush=True)
    out["_cuda_endAllocateToPool"] = ENDED  # what ending the recording by hand returned
    report(out, args.json)
    return 0 if out["engine.graphs.capture (GraphPool)"]["next_capture"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
