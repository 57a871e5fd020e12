"""``nn.Linear``, ``nn.Conv1d`` and ``nn.Embedding`` whose random initialisation can be skipped.

A model about to take a checkpoint's tensors is built on the meta device, where nothing is computed.
Yet PyTorch's initialisers are Python meta kernels there, and the first one imports torch._dynamo,
sympy and the rest of the compiler stack (~5 s on a GPU machine): inside ``uninitialised()`` these
layers allocate and skip ``reset_parameters``. Elsewhere they are PyTorch's layers, initialised as
PyTorch does (a seeded random model gets the same weights).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["Linear", "Conv1d", "Embedding", "uninitialised", "initialising"]

_SKIP = contextvars.ContextVar("f5_worker_skip_init", default=False)


@contextmanager
def uninitialised() -> Iterator[None]:
    """Build modules without initialising their parameters (they must all be assigned afterwards)."""
    token = _SKIP.set(True)
    try:
        yield
    finally:
        _SKIP.reset(token)


def initialising() -> bool:
    """Whether modules built now should initialise their parameters (False inside ``uninitialised()``)."""
    return not _SKIP.get()


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        if initialising():
            super().reset_parameters()


class Conv1d(nn.Conv1d):
    def reset_parameters(self) -> None:
        if initialising():
            super().reset_parameters()


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        if initialising():
            super().reset_parameters()
