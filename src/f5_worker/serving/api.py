"""The local HTTP API: RunPod's job endpoints, OpenAI's speech endpoint, and health.

The job endpoints (``/run``, ``/runsync``, ``/status/{id}``, ``/stream/{id}``) are the
RunPod SDK's own local API (what ``--rp_serve_api`` serves) around our handler, so a
request that works here works on RunPod. ``POST /v1/audio/speech`` answers like
OpenAI's: the audio file as the body, or ``{"error": {"message", "type"}}``.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..log import get_logger
from .errors import ServingError
from .formats import CONTENT_TYPES
from .handler import make_handler
from .request import parse_openai_speech

__all__ = ["build_app"]

log = get_logger("serving.api")


def _openai_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status == 400 else "server_error"}},
                        status_code=status)


def build_app(worker) -> FastAPI:
    from runpod.serverless.modules.rp_fastapi import WorkerAPI

    service = worker.service
    app = WorkerAPI({"handler": make_handler(service, worker.settings.streaming),
                     "return_aggregate_stream": True}).rp_app
    app.title = "f5-worker"

    async def speech(request: Request):
        try:
            payload = await request.json()
        except ValueError:
            return _openai_error("the body is not JSON", 400)
        try:
            synthesis = parse_openai_speech(payload, service.config.limits)
            data, _meta = await asyncio.to_thread(service.render, synthesis)
        except ServingError as exc:
            return _openai_error(str(exc), 400)
        except Exception:
            log.exception("speech request failed", extra={"phase": "serve"})
            return _openai_error("internal error while synthesising; the worker logged the details", 500)
        return Response(content=data, media_type=CONTENT_TYPES[synthesis.output_format])

    async def health():
        return worker.health()

    app.add_api_route("/v1/audio/speech", speech, methods=["POST"], summary="OpenAI-compatible speech synthesis")
    app.add_api_route("/health", health, methods=["GET"], summary="Bootstrap verdict and readiness")
    return app
