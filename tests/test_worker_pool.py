"""A worker on several GPUs, with CPU engines standing in: concurrency, /health and /ping account for all.

``Worker(devices=...)`` names the engines' devices (on a GPU machine they come from ``F5_WORKER_GPUS``
and the GPUs visible). ``cpu:nope`` is a device torch refuses: an engine that fails to load.
"""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from f5_worker.engine.pool import EnginePool
from f5_worker.serving.api import build_app
from f5_worker.serving.ping import ping_status
from f5_worker.worker import Worker
from support.engine import tone, wav_bytes

JOB = {"text": "Served by one of several engines.", "ref_audio": base64.b64encode(wav_bytes(tone(2.0))).decode(),
       "ref_text": "A steady tone.", "seed": 5, "nfe_step": 4}


@pytest.fixture
def start(make_settings):
    workers = []

    def start(devices) -> Worker:
        settings = make_settings(model="tiny-random", offline=True, legacy_model_dirs=(), flash_attn="off")
        workers.append(Worker(settings, devices=devices).load())
        return workers[-1]

    yield start
    for worker in workers:
        worker.engine.close()


def test_every_engine_serves_and_is_reported(start):
    worker = start(["cpu", "cpu", "cpu"])
    assert isinstance(worker.engine, EnginePool)
    assert worker.concurrency == 12  # 4 per CPU engine, summed
    assert "audio" in worker.service.run(JOB)
    health = worker.health()
    assert health["status"] == "ready" and health["concurrency"] == 12 and health["pending"] == []
    assert health["attention"]["single"] == "sdpa"
    engines = health["engine"]["engines"]
    assert [(e["index"], e["device"], e["state"]) for e in engines] == [(0, "cpu", "serving"), (1, "cpu", "serving"),
                                                                         (2, "cpu", "serving")]
    assert all(e["attention"]["single"] == "sdpa" and e["pending"] == [] and "queue" in e for e in engines)
    with TestClient(build_app(worker)) as client:
        answer = client.get("/health")
        assert answer.status_code == 200 and len(answer.json()["engine"]["engines"]) == 3
        assert client.get("/ping").status_code == 200


def test_a_gpu_that_fails_to_load_is_reported_and_the_others_serve(start):
    worker = start(["cpu", "cpu:nope"])
    assert worker.state == "ready" and worker.concurrency == 4
    failed = worker.health()["engine"]["engines"][1]
    assert failed["state"] == "failed" and failed["device"] == "cpu:nope" and "Invalid device" in failed["error"]
    assert "audio" in worker.service.run(JOB)
    assert ping_status(worker)[0] == 200


def test_ping_stays_healthy_while_one_gpu_thread_runs(start):
    worker = start(["cpu", "cpu"])
    worker.engine.slots[1].batcher.close()
    assert ping_status(worker)[0] == 200 and worker.concurrency == 4
    assert worker.health()["engine"]["engines"][1]["error"] == "its GPU thread stopped"
    assert "audio" in worker.service.run(JOB)
    worker.engine.slots[0].batcher.close()
    assert ping_status(worker)[0] == 503
