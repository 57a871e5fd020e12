"""``/ping`` for RunPod's load balancer: 204 while initialising, 200 when healthy, 503 otherwise.

RunPod routes requests only to workers whose ``/ping`` (on ``PORT_HEALTH``) answers 200, counts
the time from its first 204 to its first 200 as the cold start, and removes workers that answer
anything else. Served by the API itself, or, when ``PORT_HEALTH`` differs from ``PORT``, by a
small standard-library server on its own thread (``serve_ping``), so it answers even while the
API's event loop is busy.
"""

from __future__ import annotations

import http.server
import json
import threading

__all__ = ["ping_status", "serve_ping"]


def ping_status(worker) -> tuple[int, dict | None]:
    """The status code and JSON body (None: no body) ``/ping`` answers for ``worker`` now."""
    if worker.state == "initialising":
        return 204, None
    if worker.state == "failed":
        return 503, {"status": "unhealthy", "error": worker.error}
    engine = worker.engine
    if engine is None or not engine.batcher.alive:
        return 503, {"status": "unhealthy", "error": "the engine's GPU thread is not running"}
    return 200, {"status": "healthy"}


def serve_ping(worker, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """Answer ``GET /ping`` on ``host:port`` from a daemon thread; returns the server (``shutdown()`` stops it)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (the standard library's name)
            if self.path.split("?")[0] != "/ping":
                self.send_error(404)
                return
            code, body = ping_status(worker)
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # the worker logs its own way
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="f5-worker-ping", daemon=True).start()
    return server
