"""The batcher with a stand-in batch function: how jobs are grouped, isolated, cancelled and drained."""

from __future__ import annotations

import threading
import time

import pytest

from f5_worker.engine.batcher import Batcher, Closed


class Recorder:
    """A batch function that records each batch and answers each job with job * 10."""

    def __init__(self, fail_on=None, gate: threading.Event | None = None):
        self.batches: list[list] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.gate = gate

    def __call__(self, jobs):
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(jobs))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and self.fail_on in jobs:
            raise RuntimeError(f"job {self.fail_on} breaks any batch it is in")
        return [job * 10 for job in jobs]


def blocked(batcher: Batcher) -> threading.Event:
    """Occupy the batcher's thread until the returned event is set, so jobs queue up behind it."""
    gate = threading.Event()
    batcher.submit_call(gate.wait)
    return gate


def test_jobs_queued_together_run_as_one_batch_and_each_gets_its_answer():
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    futures = [batcher.submit(i) for i in range(5)]
    gate.set()
    assert [f.result(timeout=10) for f in futures] == [0, 10, 20, 30, 40]
    assert run.batches == [[0, 1, 2, 3, 4]]


def test_the_time_spent_running_batches_adds_up():
    """``busy_seconds`` against wall time says whether a GPU thread idled between batches (bench/throughput.py)."""
    batcher = Batcher(lambda jobs: time.sleep(0.05) or [0] * len(jobs), max_batch=2, window_s=0.0)
    assert batcher.busy_seconds == 0.0
    for _ in range(3):
        batcher.submit(1).result(timeout=10)
    assert batcher.batches == 3 and 0.15 <= batcher.busy_seconds < 1.5


def test_a_lone_job_waits_at_most_the_window_for_company():
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.3)
    first = batcher.submit(1)
    time.sleep(0.05)
    second = batcher.submit(2)  # arrives inside the first job's window
    assert (first.result(timeout=10), second.result(timeout=10)) == (10, 20)
    assert run.batches == [[1, 2]]
    started = time.monotonic()
    batcher.submit(3).result(timeout=10)
    assert time.monotonic() - started < 2  # alone: ran after the window, not after a hang


def test_after_a_batch_of_one_a_lone_job_starts_without_waiting():
    """Waiting for company pays while requests come together; one after another, it only adds latency."""
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.5)
    started = time.monotonic()
    batcher.submit(1).result(timeout=10)
    assert time.monotonic() - started >= 0.5  # nothing known yet: it waited the window
    started = time.monotonic()
    batcher.submit(2).result(timeout=10)
    assert time.monotonic() - started < 0.25  # alone after alone: at once
    gate = blocked(batcher)
    futures = [batcher.submit(i) for i in (3, 4)]
    gate.set()
    [f.result(timeout=10) for f in futures]
    started = time.monotonic()
    batcher.submit(5).result(timeout=10)
    assert time.monotonic() - started >= 0.5  # after a batch with company, a lone job waits for more again
    assert run.batches == [[1], [2], [3, 4], [5]]


def test_jobs_arriving_one_after_another_keep_the_batch_open_up_to_four_windows():
    """Clients answered by one batch come back staggered (each prepares under the GIL): one batch again."""
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.2)
    futures = []
    for i in range(4):  # 0.15 s apart: each inside the window the one before it opened, 0.45 s in all
        futures.append(batcher.submit(i))
        time.sleep(0.15)
    assert [f.result(timeout=10) for f in futures] == [0, 10, 20, 30]
    assert run.batches == [[0, 1, 2, 3]]  # with one fixed window: [[0, 1], [2, 3]]
    run.batches.clear()
    futures = []
    for i in range(8):  # 0.15 s apart for 1.05 s: the batch closes at four windows (0.8 s)
        futures.append(batcher.submit(i))
        time.sleep(0.15)
    [f.result(timeout=10) for f in futures]
    assert len(run.batches[0]) < 8 and sorted(sum(run.batches, [])) == list(range(8))


def test_long_batches_may_gather_longer_while_jobs_keep_joining():
    """Where a batch takes long (many clients' requests), gathering its company for up to 2% of that time costs
    less than splitting it: 8 jobs 0.15 s apart, which four windows of 0.2 s split, join one batch."""
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.2)
    batcher.batch_seconds = 60.0  # as measured: 2% is 1.2 s
    futures = []
    for i in range(8):
        futures.append(batcher.submit(i))
        time.sleep(0.15)
    [f.result(timeout=10) for f in futures]
    assert run.batches == [list(range(8))]


def test_batches_hold_at_most_max_batch_jobs_and_max_size():
    run = Recorder()
    batcher = Batcher(run, max_batch=3, window_s=0.0, max_size=100)
    gate = blocked(batcher)
    futures = [batcher.submit(i) for i in range(7)]
    big = [batcher.submit(100 + i, size=60) for i in range(2)]
    gate.set()
    for f in futures + big:
        f.result(timeout=10)
    assert run.batches == [[0, 1, 2], [3, 4, 5], [6, 100], [101]]  # 60 + 60 exceed max_size 100


def test_jobs_with_different_keys_are_never_batched_together():
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    futures = [batcher.submit(i, key="nfe32" if i % 2 else "nfe16") for i in range(6)]
    gate.set()
    assert [f.result(timeout=10) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert sorted(run.batches) == [[0, 2, 4], [1, 3, 5]]


def test_a_job_that_breaks_its_batch_fails_alone():
    run = Recorder(fail_on=2)
    batcher = Batcher(run, max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    futures = [batcher.submit(i) for i in range(4)]
    gate.set()
    with pytest.raises(RuntimeError, match="job 2 breaks"):
        futures[2].result(timeout=10)
    assert [futures[i].result(timeout=10) for i in (0, 1, 3)] == [0, 10, 30]


def test_an_outcome_that_is_an_exception_fails_only_its_job():
    batcher = Batcher(lambda jobs: [ValueError("bad") if j == 1 else j for j in jobs], max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    ok, bad = batcher.submit(0), batcher.submit(1)
    gate.set()
    assert ok.result(timeout=10) == 0
    with pytest.raises(ValueError):
        bad.result(timeout=10)


def test_a_cancelled_job_is_removed_from_its_batch():
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    keep, drop = batcher.submit(1), batcher.submit(2)
    assert drop.cancel()
    gate.set()
    assert keep.result(timeout=10) == 10
    assert run.batches == [[1]]


def test_all_work_runs_on_one_long_lived_thread():
    run = Recorder()
    batcher = Batcher(run, max_batch=2, window_s=0.0, name="gpu")
    names = {batcher.call(lambda: threading.current_thread().name)}
    results = []
    workers = [threading.Thread(target=lambda i=i: results.append(batcher.submit(i).result(timeout=10))) for i in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(results) == [0, 10, 20, 30, 40, 50]
    assert run.threads | names == {"f5-worker-gpu"}


def test_close_finishes_queued_jobs_then_refuses_new_ones():
    run = Recorder()
    batcher = Batcher(run, max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    queued = batcher.submit(1)
    threading.Timer(0.1, gate.set).start()
    batcher.close(timeout=10)
    assert queued.result(timeout=0) == 10
    with pytest.raises(Closed):
        batcher.submit(2)


def test_close_without_draining_cancels_what_is_queued():
    batcher = Batcher(Recorder(), max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    queued = batcher.submit(1)
    threading.Timer(0.1, gate.set).start()
    batcher.close(timeout=10, drain=False)
    assert queued.cancelled()


def test_idle_work_runs_only_while_no_job_waits_and_stops_when_done():
    done, seen_queue = [], []

    def idle():
        seen_queue.append(batcher.queued)
        done.append(1)
        time.sleep(0.01)
        return len(done) < 5  # five pieces of background work, then none left

    batcher = Batcher(Recorder(), max_batch=8, window_s=0.0)
    gate = blocked(batcher)
    batcher.set_idle(idle)
    job = batcher.submit(3)
    gate.set()
    assert job.result(timeout=10) == 30
    deadline = time.monotonic() + 10
    while batcher.idle is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) == 5 and batcher.idle is None
    assert set(seen_queue) == {0}  # never while a job was waiting
    assert batcher.submit(4).result(timeout=10) == 40


def test_failing_idle_work_is_dropped_and_serving_goes_on():
    def idle():
        raise RuntimeError("capture failed")

    batcher = Batcher(Recorder(), max_batch=8, window_s=0.0)
    batcher.set_idle(idle)
    deadline = time.monotonic() + 10
    while batcher.idle is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.idle is None
    assert batcher.submit(2).result(timeout=10) == 20


def test_expected_wait_counts_the_batches_ahead_at_the_measured_time_per_batch():
    gate = threading.Event()
    batcher = Batcher(lambda payloads: [gate.wait(10) and p for p in payloads], max_batch=2, window_s=0.0)
    assert batcher.expected_wait_s() == 0.0 and batcher.alive
    batcher.batch_seconds = 0.5  # as if measured
    futures = [batcher.submit(i) for i in range(5)]
    while batcher.queued != 3:  # the first two run (held at the gate), three wait: two batches
        threading.Event().wait(0.01)
    assert batcher.expected_wait_s() == (2 + 1) * 0.5  # the batches ahead, plus the one running
    gate.set()
    assert [f.result(timeout=10) for f in futures] == [0, 1, 2, 3, 4]
    assert 0 < batcher.batch_seconds < 0.5  # measured now: a moving average of real batches
    batcher.close()
    assert not batcher.alive
