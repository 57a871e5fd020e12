"""F5_WORKER_API_KEY: every route but /ping and /health wants the key; a busy worker answers 429."""

from __future__ import annotations

import base64

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from f5_worker.serving.api import OPEN_PATHS, build_app
from f5_worker.settings import Settings
from f5_worker.worker import Worker
from support.engine import tone, wav_bytes

KEY = "s3cret-key"
JOB = {"text": "Words.", "ref_audio": base64.b64encode(wav_bytes(tone(2.0))).decode(), "ref_text": "A tone.",
       "nfe_step": 4, "seed": 1}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    settings = Settings(volume=tmp_path_factory.mktemp("volume"), model="tiny-random", offline=True,
                        legacy_model_dirs=(), flash_attn="off", api_key=KEY, max_wait_s=5.0)
    return Worker(settings).load()


@pytest.fixture(scope="module")
def app(worker):
    return build_app(worker)


def requests_for_every_route(app):
    """One request per method of every route the app has (path parameters filled in)."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        path = route.path.replace("{job_id}", "nope").replace("{id}", "nope").replace("{voice_id}", "nope")
        for method in sorted(route.methods):
            yield method, path


def test_every_route_but_ping_and_health_wants_the_key(app):
    routes = list(requests_for_every_route(app))
    assert {"/runsync", "/v1/audio/speech", "/ping", "/health"} <= {path for _, path in routes}
    with TestClient(app) as client:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
                answer = client.request(method, path, headers=headers, json={"input": JOB})
                if path in OPEN_PATHS or path == "/":
                    assert answer.status_code != 401, (method, path)
                else:
                    assert answer.status_code == 401, (method, path, headers, answer.status_code)
                    assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert client.get("/openapi.json").status_code == 401  # framework routes too
        assert client.get("/").status_code == 200  # the page: static, it sends the key the user types


def test_the_right_key_is_let_through(app):
    with TestClient(app) as client:
        done = client.post("/runsync", json={"input": JOB}, headers={"Authorization": f"Bearer {KEY}"}).json()
        assert done["status"] == "COMPLETED", done
        assert client.get("/ping").status_code == 200 and client.get("/health").json()["status"] == "ready"


def test_a_worker_whose_waiting_work_exceeds_the_bound_answers_429(app, worker, monkeypatch):
    monkeypatch.setattr(worker.engine.batcher, "expected_wait_s", lambda: 12.3)
    with TestClient(app) as client:
        for path, body in (("/runsync", {"input": JOB}), ("/run", {"input": JOB}),
                           ("/v1/audio/speech", {"model": "tts-1", "voice": "x", "input": "Hi."})):
            busy = client.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"})
            assert busy.status_code == 429 and busy.headers["Retry-After"] == "13", path
            assert "busy" in busy.json()["error"]["message"]
