"""OpenAI-style routes for voices and models, on the local API (``build_app`` includes them).

    GET    /v1/models                 the loaded model, and OpenAI's names accepted for it (tts-1, tts-1-hd...)
    GET    /v1/models/{id}            one of them
    GET    /v1/audio/voices           every voice: {"voices": [{"id", "name", "builtin", "text", "transcribed"}...]}
                                      (Open WebUI reads "voices"; "data" holds the same list, OpenAI's way)
    GET    /v1/audio/voices/{id}      one voice
    POST   /v1/audio/voices           multipart: name, file (the audio), text (optional: transcribed without it)
    DELETE /v1/audio/voices/{id}      a stored voice (built-in ones stay)

Errors answer like OpenAI's: ``{"error": {"message", "type", "param"}}`` with the status the error
carries (400 bad input, 403 a built-in voice, 404 no such voice or model, 409 the name is taken,
413 too large, 503 not ready or transcription unavailable). Uploads are read with a cap
(``F5_WORKER_MAX_REF_BYTES`` plus room for the form's other fields) before anything is parsed;
the audio then goes through the same decoding, limits and clipping as a request's ``ref_audio``.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..log import get_logger
from ..settings import env_name
from .errors import PayloadTooLarge, RequestError, ServingError

__all__ = ["voices_router", "FORM_OVERHEAD_BYTES"]

log = get_logger("serving.voices")
FORM_OVERHEAD_BYTES = 256 * 1024  # the form's boundaries, headers, name and text around the audio
AUDIO_FIELDS = ("file", "audio", "audio_sample")  # ours, and the names other servers and OpenAI's voices API use
TEXT_FIELDS = ("text", "ref_text")
RETRY_AFTER_S = 5
_ERROR_TYPES = {400: "invalid_request_error", 403: "permission_error", 404: "not_found_error", 409: "conflict_error",
                413: "invalid_request_error", 503: "server_error"}

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["name", "file"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                         "description": "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"},
                "file": {"type": "string", "format": "binary", "description": "the reference audio (wav, flac, mp3, "
                         "ogg; m4a/webm through ffmpeg when installed)"},
                "text": {"type": "string", "description": "the words spoken; transcribed when left out"},
            },
        }}},
    },
}


def _error(message: str, status: int, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"message": message, "type": _ERROR_TYPES.get(status, "invalid_request_error"), "param": param}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _serving_error(exc: ServingError) -> JSONResponse:
    return _error(str(exc), getattr(exc, "status", 400), getattr(exc, "field", None))


def voices_router(worker) -> APIRouter:
    router = APIRouter()

    def not_ready() -> JSONResponse | None:
        if worker.state == "ready":
            return None
        message = (f"the worker failed to start: {worker.error}" if worker.state == "failed"
                   else "the worker is starting; retry shortly")
        return _error(message, 503, headers={"Retry-After": str(RETRY_AFTER_S)})

    def models() -> list[dict]:
        created = int(time.time() - (time.monotonic() - worker.started))
        return [{"id": name, "object": "model", "created": created, "owned_by": "f5-worker"}
                for name in worker.service.model_names()]

    @router.get("/v1/models", summary="The model this worker serves, and OpenAI's names accepted for it")
    async def list_models():
        return not_ready() or {"object": "list", "data": models()}

    @router.get("/v1/models/{model_id}", summary="One model")
    async def get_model(model_id: str):
        if problem := not_ready():
            return problem
        found = [m for m in models() if m["id"] == model_id]
        if not found:
            names = ", ".join(m["id"] for m in models())
            return _error(f"model {model_id!r} is not served here; the models are: {names}", 404, "model")
        return found[0]

    @router.get("/v1/audio/voices", summary="Every voice: built in, stored through the API, or an operator's files")
    async def list_voices():
        if problem := not_ready():
            return problem
        return await asyncio.to_thread(worker.service.list_voices)

    @router.get("/v1/audio/voices/{voice_id}", summary="One voice")
    async def get_voice(voice_id: str):
        if problem := not_ready():
            return problem
        from ..voices.store import check_name

        try:
            voice = worker.service.voices.get(check_name(voice_id, "voice"))
        except ServingError as exc:
            return _serving_error(exc)
        if voice is None:
            return _error(f"voice {voice_id!r} is not stored on this worker", 404, "voice")
        return voice.to_json()

    @router.post("/v1/audio/voices", status_code=201, openapi_extra=_UPLOAD_SCHEMA,
                 summary="Store a voice: multipart name, file and (optional) text; transcribed without text")
    async def create_voice(request: Request):
        if problem := not_ready():
            return problem
        service = worker.service
        try:
            name, data, text = await _read_upload(request, service.config.limits.max_ref_bytes)
            voice = await asyncio.to_thread(service.create_voice, name, data, text)
        except ServingError as exc:
            return _serving_error(exc)
        except Exception:
            log.exception("voice upload failed", extra={"phase": "voices.create"})
            return _error("internal error while storing the voice; the worker logged the details", 500)
        return JSONResponse(voice, status_code=201)

    @router.delete("/v1/audio/voices/{voice_id}", summary="Delete a stored voice (built-in voices stay)")
    async def delete_voice(voice_id: str):
        if problem := not_ready():
            return problem
        try:
            voice = await asyncio.to_thread(worker.service.voices.delete, voice_id)
        except ServingError as exc:
            return _serving_error(exc)
        return {"id": voice.id, "object": "audio.voice.deleted", "deleted": True}

    return router


async def _read_upload(request: Request, max_bytes: int) -> tuple[str, bytes, str | None]:
    """(name, audio bytes, text) from a multipart body read with a cap; ``RequestError`` saying what is wrong."""
    limit = max_bytes + FORM_OVERHEAD_BYTES
    too_large = PayloadTooLarge(f"the upload is larger than the limit of {max_bytes} bytes of audio "
                                f"({env_name('max_ref_bytes')}); send a shorter clip (F5-TTS uses ~12 s)", field="file")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError("the body must be multipart/form-data with the fields name, file and (optional) text, "
                           f"got {content_type or 'no content type'!r}", field="file")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    request._body = bytes(body)  # Starlette's form parser reads a cached body instead of the spent stream
    try:
        form = await request.form(max_files=1, max_fields=8)
    except Exception as exc:  # Starlette's MultiPartException, or a malformed body
        raise RequestError(f"the multipart body cannot be parsed ({type(exc).__name__}: {exc})", field="file") from None
    try:
        files = [(key, form[key]) for key in AUDIO_FIELDS if key in form]
        if not files or isinstance(files[0][1], str):
            raise RequestError("file is required: the reference audio, as a file field of the form", field="file")
        data = await files[0][1].read()
        name = form.get("name")
        if not isinstance(name, str):
            raise RequestError("name is required: 1-64 letters, digits, '.', '_' or '-'", field="name")
        text = next((form[key] for key in TEXT_FIELDS if key in form), None)
        if text is not None and not isinstance(text, str):
            raise RequestError("text must be a form field (the words spoken), not a file", field="text")
        kind = form.get("type", "audio_sample")
        if kind != "audio_sample":
            raise RequestError(f"type {kind!r} is not supported: a voice here is made from an audio sample",
                               field="type")
        # OpenAI's custom-voice fields this server has no use for: a consent id, a model, a script hint
        unknown = sorted(set(form) - {"name", *AUDIO_FIELDS, *TEXT_FIELDS, "type", "model", "consent", "script_hint"})
        if unknown:
            raise RequestError(f"unknown form field {unknown[0]!r}; send name, file and (optional) text",
                               field=unknown[0])
        return name, data, text
    finally:
        await form.close()
