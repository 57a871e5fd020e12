"""Concurrent jobs are batched on the GPU thread; each still gets exactly what it would get alone.

The tiny-random engine on the CPU. To make a batch deterministic, the engine's GPU thread is held
busy while the jobs arrive, so they queue up and are taken together when it is released.
"""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from f5_worker.engine.engine import Engine, EngineConfig
from f5_worker.serving.service import Service, ServiceConfig
from support.engine import tone, wav_bytes

REF = base64.b64encode(wav_bytes(tone(2.0))).decode()
TEXTS = ["Short one.", "A somewhat longer sentence, with a clause or two in it.",
         "Medium length words here, spoken clearly.", "Another short line."]


def job(text: str, seed: int, **fields) -> dict:
    return {"text": text, "ref_audio": REF, "ref_text": "A steady tone.", "nfe_step": 4, "seed": seed,
            "output_format": "wav"} | fields


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    engine = Engine(EngineConfig(model="tiny-random", device="cpu", max_batch=8, batch_window_s=0.0))
    return Service(engine, ServiceConfig(voices_dir=tmp_path_factory.mktemp("voices")))


def run_together(service: Service, jobs: list[dict]) -> tuple[list[dict], int]:
    """Run jobs concurrently behind a held GPU thread; returns their results and the batches used."""
    batcher = service.engine.batcher
    gate = threading.Event()
    batcher.submit_call(gate.wait)
    before = batcher.batches
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(service.run, j) for j in jobs]
        while batcher.queued < len(jobs):  # every job's chunks are queued behind the held thread
            threading.Event().wait(0.01)
        gate.set()
        results = [f.result(timeout=120) for f in futures]
    return results, batcher.batches - before


def samples(result: dict) -> np.ndarray:
    import io

    import soundfile as sf

    return sf.read(io.BytesIO(base64.b64decode(result["audio"])), dtype="float32")[0]


def test_batched_jobs_match_the_same_jobs_run_alone(service):
    jobs = [job(text, seed=10 + i) for i, text in enumerate(TEXTS)]
    together, batches = run_together(service, jobs)
    assert batches == 1  # four requests of different lengths, one sampling call
    alone = [service.run(j) for j in jobs]
    for a, b in zip(together, alone):
        assert "error" not in a and "error" not in b, (a, b)
        assert (a["format"], a["sample_rate"], a["duration_s"], a["seed"]) == \
            (b["format"], b["sample_rate"], b["duration_s"], b["seed"])
        np.testing.assert_allclose(samples(a), samples(b), atol=2 / 32767)  # 16-bit wav: within a step or two
    durations = [r["duration_s"] for r in together]
    assert len(set(durations)) == len(durations)  # each request kept its own length


def test_a_request_that_breaks_the_batch_fails_alone(service, monkeypatch):
    sampler = service.engine.sampler
    real = sampler.sample

    def poisoned(requests, config):
        if any(r.seed == 666 for r in requests):
            raise RuntimeError("this request cannot be sampled")
        return real(requests, config)

    monkeypatch.setattr(sampler, "sample", poisoned)
    jobs = [job(TEXTS[0], 1), job(TEXTS[1], 666), job(TEXTS[2], 3)]
    results, batches = run_together(service, jobs)
    assert "error" in results[1] and "internal error" in results[1]["error"]
    assert "error" not in results[0] and "error" not in results[2]
    assert batches == 1


def test_concurrency_defaults_to_the_batch_size(service):
    from f5_worker.settings import Settings
    from f5_worker.worker import Worker

    worker = Worker(Settings.from_env({}, volume=service.config.voices_dir))
    worker.service = service
    assert worker.concurrency == service.engine.batcher.max_batch == 8


def test_a_streaming_job_in_a_batch_still_streams_what_it_returns_whole(service):
    long_text = " ".join(f"Sentence {i} goes here, and then some more words follow." for i in range(6))
    streamed = job(long_text, seed=21)
    batcher = service.engine.batcher
    gate = threading.Event()
    batcher.submit_call(gate.wait)
    with ThreadPoolExecutor(3) as pool:
        pieces = pool.submit(lambda: list(service.stream(streamed)))
        others = [pool.submit(service.run, job(text, seed=30 + i)) for i, text in enumerate(TEXTS[:2])]
        while batcher.queued < 3:
            threading.Event().wait(0.01)
        gate.set()
        pieces = pieces.result(timeout=120)
        assert all("error" not in o.result(timeout=120) for o in others)
    assert len(pieces) > 1 and all("error" not in p for p in pieces), pieces  # one piece per text chunk
    whole = service.run(streamed)
    joined = np.concatenate([samples(p) for p in pieces])
    np.testing.assert_allclose(joined, samples(whole), atol=2 / 32767)
