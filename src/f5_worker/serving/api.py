"""The local HTTP API: RunPod's job endpoints, OpenAI's speech endpoint, and health.

It listens before the model is loaded: ``/health`` answers 503 ``{"status": "initialising"}``
until the worker is ready (then 200 ``"ready"``; 503 ``"failed"`` with the reason if the load
failed), and the other routes answer 503 with ``Retry-After`` meanwhile. Nothing here imports
torch or the engine: the worker's load does, on its own thread, after the bootstrap.

The job endpoints (``serving.jobs``) take RunPod's request shapes, so a request that works
here works on RunPod. ``POST /v1/audio/speech`` answers like OpenAI's: the audio file as the
body, or ``{"error": {"message", "type"}}``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.resources
import hmac
import math
import time

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from ..log import event, get_logger
from .errors import RequestError, ServingError
from .formats import CONTENT_TYPES
from .jobs import Jobs
from .ping import ping_status
from .request import openai_stream_format, parse_openai_speech
from .speech_stream import SpeechStream
from .voices_api import voices_router
from .stream_encode import STREAMABLE

__all__ = ["build_app"]

log = get_logger("serving.api")
RETRY_AFTER_S = 5
EXECUTOR_THREADS = 256  # mostly waiting on the batcher: cheap, and above any batch size tuning picks (64)
# Answered without the API key: load balancers and probes call /ping and /health; "/" is the static page,
# which holds no data and sends the key the user types with each of its API calls (a browser cannot add it).
OPEN_PATHS = frozenset({"/ping", "/health", "/"})


class BearerAuth:
    """ASGI middleware: with a key configured, every route but ``OPEN_PATHS`` needs ``Authorization: Bearer KEY``
    (compared in constant time). A middleware rather than a per-route check, so a new route cannot be left open."""

    def __init__(self, app, key: str | None):
        self.app, self.key = app, (key or "").encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.key and scope["path"] not in OPEN_PATHS:
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                response = JSONResponse(
                    {"error": {"message": "missing or wrong API key: send Authorization: Bearer <F5_WORKER_API_KEY>",
                               "type": "invalid_request_error", "code": "invalid_api_key"}},
                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _openai_error(message: str, status: int) -> JSONResponse:
    kind = "invalid_request_error" if status == 400 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


@functools.cache
def _page() -> str:
    """The page to try the worker (``static/index.html``): no external assets, so it works offline."""
    return (importlib.resources.files(__package__) / "static" / "index.html").read_text(encoding="utf-8")


class Admission:
    """Syntheses admitted and not finished: most wait on a thread for their chunks, not yet in the batcher."""

    def __init__(self):
        self.active = 0

    @contextlib.contextmanager
    def held(self):
        self.active += 1  # the event loop's thread only: no lock needed
        try:
            yield
        finally:
            self.active -= 1


def expected_wait_s(worker, admitted: int) -> float:
    """How long a synthesis admitted now would wait for its first batch: the batches the work ahead of it
    fills (admitted jobs, or the batcher's queue if longer) at the measured time per batch."""
    batcher = worker.engine.batcher
    return max(batcher.expected_wait_s(), (admitted // batcher.max_batch) * batcher.batch_seconds)


def _busy(worker, admission: Admission) -> JSONResponse | None:
    """429 when the work already waiting could not let a new synthesis start within ``max_wait_s``:
    with no queue in front (a load-balancing endpoint), refusing early beats queueing without limit."""
    wait = expected_wait_s(worker, admission.active)
    if wait <= worker.settings.max_wait_s:
        return None
    return JSONResponse({"error": {"message": f"the worker is busy: a new request would wait ~{wait:.0f} s, over "
                                              f"its {worker.settings.max_wait_s:g} s bound; retry later",
                                   "type": "rate_limit_error", "code": "busy"}},
                        status_code=429, headers={"Retry-After": str(max(1, math.ceil(wait)))})


def _not_ready(worker) -> JSONResponse:
    message = (f"the worker failed to start: {worker.error}" if worker.state == "failed"
               else "the worker is starting; retry shortly")
    return JSONResponse({"error": message, "status": worker.state}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


async def _json_body(request: Request) -> object:
    try:
        return await request.json()
    except ValueError:
        return None


def build_app(worker) -> FastAPI:
    admission = Admission()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # Each synthesis waits for its chunks on a thread: enough threads that the batcher can fill its batches.
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=EXECUTOR_THREADS, thread_name_prefix="f5-worker-http"))
        event(log, "listening", phase="serve.listen", since_start_s=round(time.monotonic() - worker.started, 3))
        yield

    # No Swagger page: FastAPI's loads its assets from a CDN (blank offline); /openapi.json is the reference.
    app = FastAPI(title="f5-worker", version=worker.version, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BearerAuth, key=worker.settings.api_key)
    jobs: dict[str, Jobs] = {}  # made once the service exists

    def job_runner() -> Jobs:
        if "jobs" not in jobs:
            service = worker.service
            stream = service.stream if worker.settings.streaming else None
            jobs["jobs"] = Jobs(service.run, stream)
        return jobs["jobs"]

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(_page())

    @app.get("/health", summary="Readiness, the engine, the attention kernels, and what is still pending")
    async def health():
        return JSONResponse(worker.health(), status_code=200 if ping_status(worker)[0] == 200 else 503)

    @app.get("/ping", summary="RunPod load balancer's check: 204 initialising, 200 healthy, 503 unhealthy")
    async def ping():
        code, body = ping_status(worker)
        return Response(status_code=204) if body is None else JSONResponse(body, status_code=code)

    async def admitted_input(request: Request):
        """A job's input, or the answer that refuses it: not ready yet, busy, or not ``{"input": ...}``."""
        if worker.state != "ready":
            return None, _not_ready(worker)
        if busy := _busy(worker, admission):
            return None, busy
        body = await _json_body(request)
        if not isinstance(body, dict) or "input" not in body:
            return None, JSONResponse({"error": 'the body must be JSON like {"input": {...}}'}, status_code=400)
        return body["input"], None

    @app.post("/runsync", summary="Run a job and wait for its result (RunPod's shape)")
    async def runsync(request: Request):
        payload, refusal = await admitted_input(request)
        if refusal:
            return refusal
        with admission.held():
            job = await job_runner().run_sync(payload)
        return job.to_json()

    @app.post("/run", summary="Start a job; poll /status/{id} or /stream/{id} (RunPod's shape)")
    async def run(request: Request):
        payload, refusal = await admitted_input(request)
        if refusal:
            return refusal
        job = job_runner().submit(payload, admission.held())
        return {"id": job.id, "status": job.status}

    def find(job_id: str):
        job = job_runner().get(job_id) if worker.state == "ready" else None
        if job is None:
            return None, JSONResponse({"error": f"no job {job_id!r} on this worker"}, status_code=404)
        return job, None

    async def status(job_id: str):
        job, problem = find(job_id)
        return problem or job.to_json()

    async def stream(job_id: str):
        job, problem = find(job_id)
        if problem:
            return problem
        pieces = [{"output": piece} for piece in job_runner().take_stream(job)]
        return {"id": job.id, "status": job.status, "stream": pieces} | ({"error": job.error} if job.error else {})

    for method in ("GET", "POST"):  # RunPod's SDK polls with POST; a route each, so each has its own operation id
        app.add_api_route("/status/{job_id}", status, methods=[method], operation_id=f"status_{method.lower()}",
                          summary="A job's status, and its output when done")
        app.add_api_route("/stream/{job_id}", stream, methods=[method], operation_id=f"stream_{method.lower()}",
                          summary="A streaming job's pieces made since the last call")

    @app.post("/cancel/{job_id}", summary="Cancel a job: its chunks not yet sampled are dropped")
    async def cancel(job_id: str):
        job, problem = find(job_id)
        if problem:
            return problem
        job_runner().cancel(job)
        return {"id": job.id, "status": job.status}

    @app.post("/v1/audio/speech", summary="OpenAI-compatible speech synthesis")
    async def speech(request: Request):
        if worker.state != "ready":
            return _not_ready(worker)
        if busy := _busy(worker, admission):
            return busy
        payload = await _json_body(request)
        if payload is None:
            return _openai_error("the body is not JSON", 400)
        service = worker.service
        try:
            synthesis = parse_openai_speech(payload, service.config.limits, service.model_names())
            sse = openai_stream_format(payload) == "sse"
            if synthesis.output_format in STREAMABLE:  # sent as each text chunk is done
                stream = await SpeechStream(service, synthesis, sse=sse, admission=admission.held()).open()
                return StreamingResponse(stream.body(), headers={"Cache-Control": "no-store"},
                                         media_type="text/event-stream" if sse else CONTENT_TYPES[synthesis.output_format])
            if sse:
                raise RequestError(f"response_format {synthesis.output_format!r} cannot be streamed as events (its "
                                   f"header needs the totals); use one of {', '.join(STREAMABLE)}",
                                   field="response_format")
            with admission.held():
                data, _meta = await asyncio.to_thread(service.render, synthesis)  # flac: whole, once done
        except ServingError as exc:
            return _openai_error(str(exc), 400)
        except Exception:
            log.exception("speech request failed", extra={"phase": "serve"})
            return _openai_error("internal error while synthesising; the worker logged the details", 500)
        return Response(content=data, media_type=CONTENT_TYPES[synthesis.output_format])

    app.include_router(voices_router(worker))  # /v1/models, /v1/audio/voices
    return app
