"""Gathers concurrent jobs into batches for one GPU thread.

Callers ``submit`` a job and wait on the returned ``Future``. One thread takes the oldest
job, waits up to ``window_s`` for more that can share its batch (equal ``key``), and hands
up to ``max_batch`` of them to ``run_batch``; whatever arrives while a batch runs forms the
next one, so batches grow with load and a lone request waits at most the window, and not at all when
the batch before it was a lone job too (waiting for company pays only while requests come together;
otherwise it adds the window to every request's latency). Each job that
joins extends the wait by one window, up to ``WINDOWS_AT_MOST`` windows in all, or ``GATHER_SHARE`` of the time a
batch takes when that is longer: clients answered together by one batch come back a few milliseconds apart
(each prepares its next request under the GIL), and a fixed window would split them into two smaller batches
that stay split. 32 clients take longer to come back than 16 (on the H200 at 5 ms windows, 32 closed-loop
clients ran as batches of 21.3 on average: bench/results/throughput-sdpa-h200.json), while their batch takes
3.5 s: gathering for up to 2% of that costs less than a split batch.

All GPU work happens on that one long-lived thread: CUDA graphs and per-thread library
handles are made once, not per request.

- A job whose future was cancelled before its batch started is dropped from the batch.
- ``run_batch`` returns one outcome per job (a result or an exception); if it raises
  instead, each job of the batch is run alone, so a request that breaks a batch fails alone.
- ``set_idle(fn)``: ``fn`` is called on the thread whenever no job is waiting: one short piece of
  background work per call (preparing for shapes not seen yet), returning False when none is left.
  A job that arrives meanwhile waits for that one piece only.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..log import event, get_logger

__all__ = ["Batcher", "BatchJob", "Closed"]

log = get_logger("engine.batcher")
WINDOWS_AT_MOST = 4  # how long a batch may keep gathering, in windows, while jobs keep joining it
GATHER_SHARE = 0.02  # ... or this share of the measured time per batch, when that is longer
J = TypeVar("J")


class Closed(RuntimeError):
    """The batcher was closed: no more jobs are taken."""


@dataclass
class BatchJob(Generic[J]):
    payload: J
    key: Hashable  # jobs batch together only when their keys are equal
    size: int = 1  # weight against ``max_size`` (e.g. frames to sample)
    future: Future = field(default_factory=Future)


class Batcher(Generic[J]):
    def __init__(self, run_batch: Callable[[list[J]], Sequence[Any]], *, max_batch: int, window_s: float,
                 max_size: int | None = None, name: str = "gpu"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be 1 or more, not {max_batch}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_size = max_size
        self._queue: deque[BatchJob[J]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.idle: Callable[[], bool] | None = None
        self.batches = 0  # batches run so far (for logs and tests)
        self._last_batch_jobs = 0  # jobs in the last batch taken (0: none yet)
        self.batch_seconds = 0.0  # a moving average of how long a batch takes (0 until one has run)
        self.busy_seconds = 0.0  # time spent running batches so far: against wall time, how busy the thread was
        self._thread = threading.Thread(target=self._loop, name=f"f5-worker-{name}", daemon=True)
        self._thread.start()
        # A daemon thread frozen inside a torch call at interpreter exit aborts the process.
        atexit.register(_close_at_exit, weakref.ref(self))

    def submit(self, payload: J, key: Hashable = None, size: int = 1) -> Future:
        job = BatchJob(payload, key, size)
        with self._cond:
            if self._closed:
                raise Closed("the worker is shutting down")
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def set_idle(self, fn: Callable[[], bool] | None) -> None:
        with self._cond:
            self.idle = fn
            self._cond.notify()

    @property
    def queued(self) -> int:
        """Jobs waiting for the thread."""
        with self._cond:
            return len(self._queue)

    @property
    def alive(self) -> bool:
        """The thread every request needs is running (False once closed or if it died)."""
        return self._thread.is_alive()

    def expected_wait_s(self) -> float:
        """How long a job submitted now would wait before its batch starts: the batches queued ahead of
        it (and the one running) at the measured time per batch. 0 before any batch has run."""
        with self._cond:
            waiting = len(self._queue)
        return (-(-waiting // self.max_batch) + 1) * self.batch_seconds if waiting else 0.0

    def submit_call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` alone on the batcher's thread, between batches (warm-up, measurements)."""
        return self.submit(fn, key=_Call)

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.submit_call(fn).result()

    def close(self, timeout: float | None = None, *, drain: bool = True) -> None:
        """Stop taking jobs; finish those queued (or, with ``drain=False``, cancel them); stop the thread."""
        with self._cond:
            self._closed = True
            if not drain:
                while self._queue:
                    self._queue.popleft().future.cancel()
            self._cond.notify()
        self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------

    def _take(self) -> list[BatchJob[J]] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                if self.idle is not None:
                    self._cond.release()
                    try:
                        more = self._idle_once()
                    finally:
                        self._cond.acquire()
                    if not more:
                        self.idle = None
                    continue
                self._cond.wait()
            first = self._queue.popleft()
            batch = [first]
            if first.key is _Call:
                return batch
            opened = time.monotonic()
            deadline = opened + (0.0 if self._last_batch_jobs == 1 else self.window_s)
            size = first.size
            while len(batch) < self.max_batch:
                joined = len(batch)
                for job in list(self._queue):
                    if len(batch) >= self.max_batch:
                        break
                    if job.key == first.key and (self.max_size is None or size + job.size <= self.max_size):
                        self._queue.remove(job)
                        batch.append(job)
                        size += job.size
                if len(batch) > joined:  # company came: wait one more window for the rest of it
                    longest = max(WINDOWS_AT_MOST * self.window_s, GATHER_SHARE * self.batch_seconds)
                    deadline = min(time.monotonic() + self.window_s, opened + longest)
                left = deadline - time.monotonic()
                if len(batch) >= self.max_batch or left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            self._last_batch_jobs = len(batch)
            return batch

    def _idle_once(self) -> bool:
        try:
            return bool(self.idle())
        except Exception as exc:  # noqa: BLE001  background work is optional; serving is not
            event(log, "background work stopped", phase="engine.idle", error=f"{type(exc).__name__}: {exc}",
                  level=logging.WARNING)
            return False

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._run(batch)
            except BaseException as exc:  # noqa: BLE001  a bug here must not stop the thread every request needs
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run(self, batch: list[BatchJob[J]]) -> None:
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        if batch[0].key is _Call:
            _settle(batch[0], batch[0].payload)
            return
        self.batches += 1
        began = time.monotonic()
        try:
            outcomes = self._run_batch([job.payload for job in batch])
            took = time.monotonic() - began
            self.busy_seconds += took
            self.batch_seconds = took if not self.batch_seconds else 0.8 * self.batch_seconds + 0.2 * took
            if len(outcomes) != len(batch):
                raise RuntimeError(f"run_batch returned {len(outcomes)} outcomes for {len(batch)} jobs")
        except BaseException as exc:  # noqa: BLE001  one bad job must not fail its neighbours
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            event(log, "batch failed; running its jobs one by one", phase="engine.batch", size=len(batch),
                  error=f"{type(exc).__name__}: {exc}", level=logging.WARNING)
            outcomes = []
            for job in batch:
                try:
                    outcomes.append(self._run_batch([job.payload])[0])
                except BaseException as alone:  # noqa: BLE001
                    outcomes.append(alone)
        for job, outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)


def _close_at_exit(ref: weakref.ref) -> None:
    batcher = ref()
    if batcher is not None:
        batcher.close(timeout=30, drain=False)


class _Call:
    """Key of jobs that are plain calls to run on the thread (warm-up, tuning), never batched."""


def _settle(job: BatchJob, fn: Callable[[], Any]) -> None:
    try:
        job.future.set_result(fn())
    except BaseException as exc:  # noqa: BLE001
        job.future.set_exception(exc)
