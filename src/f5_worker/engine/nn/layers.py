"""``nn.Linear``, ``nn.Conv1d`` and ``nn.Embedding`` whose random initialisation can be skipped.

A model about to take a checkpoint's tensors is built on the meta device, where nothing is computed.
Yet PyTorch's initialisers are Python meta kernels there, and the first one imports torch._dynamo,
sympy and the rest of the compiler stack (~5 s on a GPU machine): inside ``uninitialised()`` these
layers allocate and skip ``reset_parameters``. Elsewhere they are PyTorch's layers, initialised as
PyTorch does (a seeded random model gets the same weights).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["Linear", "Conv1d", "Embedding", "StackedLinears", "uninitialised", "initialising"]

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


class StackedLinears:
    """Several ``Linear`` layers that read one input, as one matmul: their weights stacked into one tensor.

    Each layer's parameters become views of the stacked tensors, so the state dict keeps the layers' own
    names and no memory is doubled. The stack is only valid while the parameters still are those views: a
    later ``.to()`` or ``load_state_dict(assign=True)`` replaces them, and then ``weight_bias`` stacks the
    current parameters on every call (correct, slower) until the stack is made again.
    """

    def __init__(self, linears: Sequence[nn.Linear]):
        self.linears = tuple(linears)
        weight = torch.cat([lin.weight.detach() for lin in self.linears])
        bias = torch.cat([lin.bias.detach() for lin in self.linears])
        self.sizes = [lin.out_features for lin in self.linears]
        start = 0
        for lin, size in zip(self.linears, self.sizes):
            lin.weight = nn.Parameter(weight[start:start + size], requires_grad=False)
            lin.bias = nn.Parameter(bias[start:start + size], requires_grad=False)
            start += size
        self._stacked = (weight, bias)

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self._stacked
        row_bytes = weight.shape[1] * weight.element_size()
        start = 0
        for lin, size in zip(self.linears, self.sizes):
            if (lin.weight.data_ptr() != weight.data_ptr() + start * row_bytes
                    or lin.bias.data_ptr() != bias.data_ptr() + start * bias.element_size()):
                return (torch.cat([lin.weight for lin in self.linears]), torch.cat([lin.bias for lin in self.linears]))
            start += size
        return weight, bias

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each layer's output, in order (views of one matmul's output)."""
        return torch.nn.functional.linear(x, *self.weight_bias()).split(self.sizes, dim=-1)
