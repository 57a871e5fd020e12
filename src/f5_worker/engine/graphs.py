"""CUDA graphs for the engine's fixed-shape GPU work: captured once per shape, replayed after.

A replay launches a whole recorded sequence of kernels at once, where eager PyTorch launches them one by
one from Python: for the small kernels of a sampling step or the vocoder, launching costs more than
running. Captures run on a side stream in ``thread_local`` mode: other threads of the process use the GPU
meanwhile (the kernels' compile-and-check thread, transcription on request threads), and in the default
"global" mode an allocation or a synchronisation of theirs during a capture would invalidate it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

from ..log import event, get_logger

__all__ = ["GraphPool", "CaptureFailed", "capture", "GraphedByShape"]

log = get_logger("engine.graphs")


class GraphPool:
    """The memory pool a set of graphs share (``handle``), replaced by a fresh one after a failed capture.
    When a capture is invalidated (a kernel that synchronises, an allocation another thread's capture
    forbids), PyTorch raises and leaves its allocators recording to the pool; every later capture into it
    then fails ("beginAllocateToPool: already recording to mempool_id"), which would end the engine's CUDA
    graphs for good. Ending that recording by hand (``torch._C._cuda_endAllocateToPool``) does not clear it on
    torch 2.11; a new pool does (``bench/probes/capture_failure.py``, on the H200). The graphs captured before
    keep the old pool's memory; only captures after a failure stop sharing with them."""

    def __init__(self):
        self.handle = torch.cuda.graph_pool_handle()

    def failed(self, error: BaseException) -> None:
        self.handle = torch.cuda.graph_pool_handle()
        event(log, "CUDA graph capture failed: its shape runs eagerly, later captures use a fresh memory pool",
              phase="engine.graphs", error=f"{type(error).__name__}: {str(error)[:300]}", level=logging.WARNING)


class CaptureFailed(RuntimeError):
    """A capture itself failed (the part ran eagerly just before, so the part works): the callers run that
    shape eagerly from then on, as slower is better than failing a request over an optimisation."""


def capture(parts: Sequence[Callable[[], object]], device, pool: GraphPool) -> list:
    """One CUDA graph per part, in order, each part run once eagerly first (kernel choice and lazy
    initialisation happen there, never inside a capture); graphs share the memory ``pool``. The graphs hold
    what the parts computed during capture: replay one before reading its outputs. A capture that fails
    raises ``CaptureFailed``, and ``pool`` moves on to a fresh pool so that later captures can succeed; an error
    of a part's eager run propagates as it is."""
    stream = torch.cuda.Stream(device=device)
    stream.wait_stream(torch.cuda.current_stream(device))
    graphs = []
    with torch.cuda.stream(stream):
        for part in parts:
            part()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=pool.handle, stream=stream, capture_error_mode="thread_local"):
                    part()
            except Exception as error:
                pool.failed(error)
                raise CaptureFailed(f"{type(error).__name__}: {error}") from error
            graphs.append(graph)
    torch.cuda.current_stream(device).wait_stream(stream)
    return graphs


class GraphedByShape:
    """``fn(x)`` replayed from a CUDA graph per shape of x (one tensor in, one out), the ``kept`` most recently
    used shapes; ``fn`` must compute with x's values only (no host synchronisation, no shape-dependent host
    logic beyond the shape). A shape is captured the second time it comes (run eagerly the first): shapes that
    never repeat (a vocoder's lengths depend on each voice's) would pay a capture each. Returns a tensor of its
    own, not the graph's output buffer. Not thread-safe: one thread (the batcher's) owns it."""

    SEEN_KEPT = 256  # shapes remembered as seen once

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, kept: int, device, pool):
        self.fn, self.kept, self.device, self.pool = fn, kept, device, pool
        self._graphs: OrderedDict[tuple, tuple[torch.Tensor, object, torch.Tensor]] = OrderedDict()
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._eager: set[tuple] = set()  # shapes whose capture failed (CaptureFailed)

    def __len__(self) -> int:
        return len(self._graphs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.stride(), x.dtype)
        if key in self._eager:
            return self.fn(x)
        entry = self._graphs.pop(key, None)
        if entry is None and self._seen.pop(key, False) is False:
            self._seen[key] = None
            while len(self._seen) > self.SEEN_KEPT:
                self._seen.popitem(last=False)
            return self.fn(x)
        if entry is None:
            static, out = x.clone(), []

            def run():  # into an output of its own, allocated by the eager run (outside the capture)
                y = self.fn(static)
                if not out:
                    out.append(torch.empty_like(y))
                out[0].copy_(y)

            try:
                (graph,) = capture([run], self.device, self.pool)
            except CaptureFailed:
                self._eager.add(key)
                return self.fn(x)
            entry = (static, graph, out[0])
            while len(self._graphs) >= self.kept:
                dropped, _ = self._graphs.popitem(last=False)
                self._seen[dropped] = None  # seen more than once: captured again when it comes back
        self._graphs[key] = entry
        static, graph, output = entry
        static.copy_(x)
        graph.replay()
        return output.clone()
