"""Where `serve` listens, and what /ping answers RunPod's load balancer."""

from __future__ import annotations

import http.client
import json
import socket
from types import SimpleNamespace

import pytest

from f5_worker.errors import ConfigError
from f5_worker.serving.listen import Listen, listen_plan, on_runpod
from f5_worker.serving.ping import ping_status, serve_ping


def test_a_local_api_binds_loopback_and_runpods_ports_bind_all_interfaces():
    assert listen_plan({}) == Listen("127.0.0.1", 8000, 8000)
    assert listen_plan({"PORT": "5000"}) == Listen("0.0.0.0", 5000, 5000)
    assert listen_plan({"PORT": "5000", "PORT_HEALTH": "5001"}) == Listen("0.0.0.0", 5000, 5001)
    assert listen_plan({"PORT": "5000"}, host="127.0.0.1", port=9000) == Listen("127.0.0.1", 9000, 9000)
    assert listen_plan({}, port=9001) == Listen("127.0.0.1", 9001, 9001)
    assert listen_plan({"PORT": "5000"}).all_interfaces and not listen_plan({}).all_interfaces


@pytest.mark.parametrize("env", [{"PORT": "http"}, {"PORT": "70000"}, {"PORT": "80", "PORT_HEALTH": "0"}])
def test_a_bad_port_is_a_clear_error(env):
    with pytest.raises(ConfigError, match="PORT"):
        listen_plan(env)


def test_runpod_is_recognised_by_its_variables():
    assert on_runpod({"RUNPOD_POD_ID": "abc"}) and not on_runpod({"PORT": "80"})


def worker(state: str, alive: bool = True, error: str | None = None):
    engine = SimpleNamespace(batcher=SimpleNamespace(alive=alive))
    return SimpleNamespace(state=state, error=error, engine=engine if state == "ready" else None)


def test_ping_follows_runpods_codes():
    assert ping_status(worker("initialising")) == (204, None)
    assert ping_status(worker("ready")) == (200, {"status": "healthy"})
    assert ping_status(worker("ready", alive=False))[0] == 503
    assert ping_status(worker("failed", error="model files unavailable")) == (
        503, {"status": "unhealthy", "error": "model files unavailable"})


def test_ping_on_its_own_port_answers_while_the_state_changes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = worker("initialising")
    server = serve_ping(state, "127.0.0.1", port)
    try:
        def get(path="/ping"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()

        assert get() == (204, b"")
        state.state, state.engine = "ready", SimpleNamespace(batcher=SimpleNamespace(alive=True))
        status, body = get()
        assert status == 200 and json.loads(body) == {"status": "healthy"}
        assert get("/anything")[0] == 404
    finally:
        server.shutdown()
