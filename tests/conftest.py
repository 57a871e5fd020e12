from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The engine's Triton kernels run in Triton's interpreter here (CI has no GPU). Triton reads this when a
# kernel is defined, so it is set before anything imports them.
os.environ.setdefault("TRITON_INTERPRET", "1")

from f5_worker.settings import Settings  # noqa: E402


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(volume: Path):
    """Settings on a test volume with upstream GitHub switched off; tests point it at 127.0.0.1."""

    def make(**changes) -> Settings:
        values = dict(volume=volume, flash_attn_upstream="", allow_http=True, download_timeout_s=5.0,
                      download_retries=1, verify_timeout_s=120.0)
        values.update(changes)
        return Settings(**values)

    return make


@pytest.fixture
def isolated_imports(monkeypatch):
    """Activation edits sys.path and PYTHONPATH; give each test its own copies."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    yield


@pytest.fixture
def httpserver():
    """pytest-httpserver on 127.0.0.1, threaded: a stalled response must not hold up the next request."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()
