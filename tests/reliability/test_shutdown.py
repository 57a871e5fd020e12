"""Graceful shutdown of `f5-worker serve`: on SIGTERM it stops taking jobs and finishes those in flight.

What uvicorn (0.54, as `cmd_serve` calls it) does on SIGTERM: close the listening socket at once (a new
connection is refused), wait for the requests in flight to finish, run the app's shutdown, then re-raise
the signal, so the process ends with status -SIGTERM, not 0. `cmd_serve` bounds that wait with
F5_WORKER_SHUTDOWN_TIMEOUT (``timeout_graceful_shutdown``), so a stuck job cannot keep it alive.
"""

from __future__ import annotations

import base64
import signal
import threading
import time
import urllib.error

import pytest

from support.engine import tone, wav_bytes

from .conftest import post, start_server

pytestmark = pytest.mark.slow

EXIT_BOUND_S = 60
LONG_TEXT = ("A longer sentence, so that each job takes a few seconds on the CPU, and several of them are "
             "still being synthesised when the worker is told to stop. ") * 2
REF = base64.b64encode(wav_bytes(tone(2.0))).decode()


def job(seed: int, text: str = LONG_TEXT, nfe_step: int = 16) -> dict:
    return {"input": {"text": text, "ref_audio": REF, "ref_text": "A steady tone.", "nfe_step": nfe_step,
                      "seed": seed}}


def test_sigterm_finishes_jobs_in_flight_then_refuses_new_ones_and_exits(server):
    post(f"{server.base}/runsync", job(0, "Warm up.", 4))  # first request pays for lazy imports
    results: dict[int, object] = {}

    def send(seed: int) -> None:
        try:
            results[seed] = post(f"{server.base}/runsync", job(seed), timeout=EXIT_BOUND_S)
        except Exception as exc:  # recorded, asserted below
            results[seed] = exc

    threads = [threading.Thread(target=send, args=(seed,)) for seed in (11, 12, 13)]
    for t in threads:
        t.start()
    time.sleep(1.5)  # all three accepted and running (GPU work is serialised: they finish one by one)
    assert not results, f"the jobs finished before SIGTERM; make them longer: {results}"
    sent_term = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    time.sleep(0.5)
    refused_at = time.monotonic()
    with pytest.raises((ConnectionRefusedError, urllib.error.URLError)) as caught:
        post(f"{server.base}/runsync", job(99, "Too late.", 4), timeout=10)
    assert time.monotonic() - refused_at < 5, "a request after SIGTERM hung instead of being refused"
    assert "refused" in str(caught.value).lower(), caught.value

    for t in threads:
        t.join(timeout=EXIT_BOUND_S)
    status = server.proc.wait(timeout=EXIT_BOUND_S)
    took = time.monotonic() - sent_term

    for seed in (11, 12, 13):
        got = results.get(seed)
        assert isinstance(got, tuple), f"job {seed} got no answer: {got!r}\n{server.output()}"
        code, body = got
        assert code == 200 and body["status"] == "COMPLETED", body
        assert body["output"]["seed"] == seed and base64.b64decode(body["output"]["audio"])[:4] == b"RIFF"
    assert status in (0, -signal.SIGTERM), server.output()
    assert took < EXIT_BOUND_S


def test_an_idle_worker_exits_promptly_on_sigterm(server):
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    status = server.proc.wait(timeout=30)
    assert status in (0, -signal.SIGTERM), server.output()
    assert time.monotonic() - began < 10


def test_a_job_longer_than_the_shutdown_bound_does_not_keep_the_worker_alive(tmp_path):
    (tmp_path / "volume").mkdir()
    server = start_server(tmp_path / "volume", F5_WORKER_SHUTDOWN_TIMEOUT="2")
    try:
        slow = threading.Thread(target=lambda: _ignore(lambda: post(f"{server.base}/runsync",
                                                                    job(1, LONG_TEXT * 4, 64), timeout=120)))
        slow.start()
        time.sleep(1.5)  # the job is in flight
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        status = server.proc.wait(timeout=60)
        assert time.monotonic() - began < 2 + 10, server.output()
        assert status in (0, -signal.SIGTERM), server.output()
        slow.join(timeout=30)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def _ignore(call) -> None:
    try:
        call()
    except OSError:  # the connection is cut when the bound passes: that is the point
        pass
