"""CUDA graphs per shape (``engine.graphs``), on the CPU: a stand-in capture runs each part where a graph would
record it, and a replay runs it again, as a graph replays what it recorded into the same tensors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from f5_worker.engine import graphs


def stand_in_capture(parts, device, pool):
    made = []
    for part in parts:
        part()  # the eager run before a capture
        part()  # what the capture records
        made.append(SimpleNamespace(replay=part))
    return made


@pytest.fixture
def captures(monkeypatch):
    made = []

    def capture(parts, device, pool):
        made.append(len(parts))
        return stand_in_capture(parts, device, pool)

    monkeypatch.setattr(graphs, "capture", capture)
    return made


def test_a_shape_seen_again_is_captured_once_and_replays_with_new_values(captures):
    graphed = graphs.GraphedByShape(lambda x: x * 2, kept=4, device="cpu", pool=None)
    a, b = torch.arange(6.0).reshape(1, 2, 3), torch.arange(6.0, 12.0).reshape(1, 2, 3)
    assert torch.equal(graphed(a), a * 2)
    assert captures == [] and len(graphed) == 0  # the first time: eager (shapes that never repeat cost no capture)
    assert torch.equal(graphed(b), b * 2) and torch.equal(graphed(a), a * 2)
    assert captures == [1] and len(graphed) == 1
    assert torch.equal(graphed(torch.ones(1, 2, 5)), torch.full((1, 2, 5), 2.0))
    assert torch.equal(graphed(torch.ones(1, 2, 5)), torch.full((1, 2, 5), 2.0))
    assert captures == [1, 1] and len(graphed) == 2
    first = graphed(a)
    graphed(b)
    assert torch.equal(first, a * 2)  # a tensor of its own: the next replay does not overwrite it


def test_a_transposed_input_is_its_own_shape(captures):
    """Strides are part of the key: a graph's kernels were chosen for its input's layout."""
    graphed = graphs.GraphedByShape(lambda x: x + 1, kept=4, device="cpu", pool=None)
    x = torch.randn(1, 3, 4)
    for _ in range(2):
        assert torch.equal(graphed(x), x + 1)
        assert torch.equal(graphed(x.transpose(1, 2).contiguous().transpose(1, 2)), x + 1)
    assert len(graphed) == 2 and captures == [1, 1]


def test_the_least_recently_used_shape_goes_first(captures):
    graphed = graphs.GraphedByShape(lambda x: -x, kept=2, device="cpu", pool=None)
    for n in (1, 2, 3):
        graphed(torch.ones(n))  # seen once: eager
    for n in (1, 2, 1, 3):  # 2 is the least recently used when 3 comes
        graphed(torch.ones(n))
    assert len(graphed) == 2 and captures == [1, 1, 1]
    graphed(torch.ones(1))
    assert captures == [1, 1, 1]  # 1 kept
    graphed(torch.ones(2))
    assert captures == [1, 1, 1, 1]  # 2 was dropped: captured again


def test_a_failed_capture_raises_and_later_captures_go_to_a_fresh_pool(monkeypatch):
    """PyTorch leaves its allocators recording to a pool whose capture was invalidated, and every later capture
    into it fails (on a GPU: bench/probes/capture_failure.py); after a failure ``capture`` moves the shared
    pool on to a new one, and the capture's error reaches the caller."""
    from contextlib import contextmanager

    handles, captured_into = iter([(0, 1), (0, 2)]), []

    @contextmanager
    def capturing(graph, pool, stream, capture_error_mode):
        captured_into.append(pool)
        yield
        if pool == (0, 1):
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    not_a_stream = SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: next(handles))
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: not_a_stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: not_a_stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextmanager(lambda: (yield))())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", SimpleNamespace)
    monkeypatch.setattr(torch.cuda, "graph", capturing)
    pool = graphs.GraphPool()
    with pytest.raises(graphs.CaptureFailed, match="previous error during capture"):
        graphs.capture([lambda: None], "cuda", pool)
    assert pool.handle == (0, 2)
    assert len(graphs.capture([lambda: None, lambda: None], "cuda", pool)) == 2
    assert captured_into == [(0, 1), (0, 2), (0, 2)]


def test_a_shape_whose_capture_fails_runs_eagerly_from_then_on(monkeypatch):
    attempts = []

    def failing_capture(parts, device, pool):
        attempts.append(len(parts))
        raise graphs.CaptureFailed("capture invalidated")

    monkeypatch.setattr(graphs, "capture", failing_capture)
    graphed = graphs.GraphedByShape(lambda x: x * 2, kept=4, device="cpu", pool=None)
    x = torch.arange(6.0).reshape(1, 2, 3)
    for _ in range(4):
        assert torch.equal(graphed(x), x * 2)
    assert attempts == [1] and len(graphed) == 0  # the second call tried once; the rest ran eagerly
