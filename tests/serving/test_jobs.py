"""The local API's states and RunPod-shaped job endpoints, in process (fastapi's test client), tiny-random."""

from __future__ import annotations

import base64
import time

import pytest
from fastapi.testclient import TestClient

from f5_worker.serving.api import build_app
from f5_worker.worker import Worker
from support.engine import tone, wav_bytes

JOB = {"text": "A job through the local endpoints.", "ref_audio": base64.b64encode(wav_bytes(tone(2.0))).decode(),
       "ref_text": "A steady tone.", "nfe_step": 4, "seed": 3}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    from f5_worker.settings import Settings

    settings = Settings(volume=tmp_path_factory.mktemp("volume"), model="tiny-random", offline=True,
                        legacy_model_dirs=(), flash_attn="off")
    return Worker(settings)


@pytest.fixture(scope="module")
def client(worker):
    with TestClient(build_app(worker)) as client:
        yield client


def test_before_the_model_is_loaded_health_says_initialising_and_jobs_are_refused_with_retry_after(client, worker):
    assert worker.state == "initialising"
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "initialising"
    for path in ("/runsync", "/run", "/v1/audio/speech"):
        refused = client.post(path, json={"input": JOB})
        assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit(), path
    worker.load()
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ready"


def test_runsync_answers_in_runpods_shape(client, worker):
    worker.state == "ready" or worker.load()
    done = client.post("/runsync", json={"input": JOB}).json()
    assert done["status"] == "COMPLETED" and done["output"]["seed"] == 3 and done["id"]
    failed = client.post("/runsync", json={"input": {**JOB, "nfe_step": "many"}}).json()
    assert failed["status"] == "FAILED" and "nfe_step" in failed["error"]
    assert client.post("/runsync", json={"no": "input"}).status_code == 400
    assert client.post("/runsync", content=b"not json").status_code == 400


def test_run_then_status_until_completed(client, worker):
    worker.state == "ready" or worker.load()
    started = client.post("/run", json={"input": JOB}).json()
    assert started["status"] in ("IN_QUEUE", "IN_PROGRESS")
    deadline = time.monotonic() + 60
    while (status := client.get(f"/status/{started['id']}").json())["status"] not in ("COMPLETED", "FAILED"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["status"] == "COMPLETED" and status["output"]["duration_s"] > 0
    assert client.post(f"/status/{started['id']}").json() == status  # RunPod's SDK polls with POST


def test_unknown_jobs_are_404_and_a_cancelled_job_says_so(client, worker):
    worker.state == "ready" or worker.load()
    assert client.get("/status/nope").status_code == 404
    assert client.post("/cancel/nope").status_code == 404
    started = client.post("/run", json={"input": {**JOB, "text": "Long words. " * 40}}).json()
    assert client.post(f"/cancel/{started['id']}").json()["status"] == "CANCELLED"
    deadline = time.monotonic() + 60
    while client.get(f"/status/{started['id']}").json()["status"] != "CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
