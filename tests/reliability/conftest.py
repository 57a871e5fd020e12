"""A real `f5-worker serve` (tiny-random, offline) in its own process on a free 127.0.0.1 port,
as tests/serving/test_api.py starts one; here each test owns its server, since some end it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.load(response)


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def start_server(volume: Path, **env_changes: str) -> Server:
    port = free_port()
    env = {**os.environ, "F5_WORKER_VOLUME": str(volume), "F5_WORKER_MODEL": "tiny-random",
           "F5_WORKER_OFFLINE": "true", "F5_WORKER_LEGACY_MODEL_DIRS": "", **env_changes}
    log = volume / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "f5_worker", "serve", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {server.output()}")
        try:
            with urllib.request.urlopen(f"{server.base}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    proc.kill()
    proc.wait()
    pytest.fail(f"server did not come up within {STARTUP_TIMEOUT_S} s: {server.output()}")


@pytest.fixture
def server(tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    started = start_server(volume)
    yield started
    if started.proc.poll() is None:
        started.proc.kill()
        started.proc.wait(timeout=30)
