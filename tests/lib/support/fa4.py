"""Stand-ins for the worker's FlashAttention-4 step (``Worker._with_fa4``): an engine as that step sees it, and a
worker whose start is over."""

from __future__ import annotations

from types import SimpleNamespace


def gpu_engine(device: str = "cuda:0", **extra) -> SimpleNamespace:
    """An engine on a GPU, fp16, with F5TTS_v1_Base's attention shape (16 heads of 64): what FA4's check and
    preparation read from it. ``extra``: more attributes (``attention``, ``use_attention``...)."""
    arch = SimpleNamespace(heads=16, dim_head=64)
    return SimpleNamespace(device=device, dtype="float16", model=SimpleNamespace(transformer=SimpleNamespace(arch=arch)),
                           **extra)


def started(worker):
    """``worker`` as a successful start leaves it: ready. FA4's in-process preparation waits for that."""
    worker.state = "ready"
    worker._settled.set()
    return worker
