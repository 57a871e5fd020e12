"""Where `serve` listens: the command line, else RunPod's load-balancing variables, else 127.0.0.1:8000.

A RunPod load-balancing endpoint sets ``PORT`` (the API) and ``PORT_HEALTH`` (``/ping``, default
``PORT``) and routes to the container from outside, so then the worker binds all interfaces;
without them it is a local API and binds loopback only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Listen", "listen_plan", "on_runpod"]

LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 8000


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    health_port: int  # serves /ping (and /health); equal to port for one listener

    @property
    def all_interfaces(self) -> bool:
        return self.host in ("0.0.0.0", "::", "")


def _port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={port} is not a port number (1-65535)")
    return port


def listen_plan(env: Mapping[str, str], host: str | None = None, port: int | None = None) -> Listen:
    """``--host``/``--port`` win; then ``PORT``/``PORT_HEALTH`` (all interfaces); then 127.0.0.1:8000."""
    runpod_port = env.get("PORT", "").strip()
    if runpod_port:
        api = _port("PORT", runpod_port) if port is None else port
        health = env.get("PORT_HEALTH", "").strip()
        return Listen(host or "0.0.0.0", api, _port("PORT_HEALTH", health) if health else api)
    api = LOCAL_PORT if port is None else port
    return Listen(host or LOCAL_HOST, api, api)


def on_runpod(env: Mapping[str, str]) -> bool:
    """Inside a RunPod worker (its platform sets these), where RunPod's gateway authenticates callers."""
    return any(env.get(name) for name in ("RUNPOD_POD_ID", "RUNPOD_ENDPOINT_ID"))
