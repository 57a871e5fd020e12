"""One synthesis job, start to finish: validate, get the reference, synthesise, encode, deliver.

Used by the RunPod handler and by the local HTTP API alike. Every failure a request
can cause becomes a ``ServingError`` whose message is safe to return as
``{"error": ...}``; anything else is a bug, logged with its traceback and answered
with a generic error, and the worker keeps serving either way.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.engine import Cancelled, Engine, Reference, SynthesisParams
from ..log import event, get_logger
from . import audio
from .errors import AudioError, RequestError, ServingError
from .fetch import fetch_reference
from .request import Limits, RefBytes, RefURL, RefVoice, SynthesisRequest, parse_request
from .voice_cache import VoiceCache

__all__ = ["Service", "ServiceConfig", "INLINE_MAX_BYTES", "STREAM_PIECE_SECONDS"]

log = get_logger("serving")
# RunPod caps a job's result payload; base64 grows bytes by 4/3, so inline audio stays under ~15 MB of text.
INLINE_MAX_BYTES = 11 * 1024**2
# Streamed pieces must each stay under RunPod's 1 MB stream limit: 10 s of 24 kHz 16-bit wav is
# 480 KB, 640 KB in base64.
STREAM_PIECE_SECONDS = 10.0
VOICE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")
RANDOM_WEIGHTS_NOTE = "random weights (tiny-random or a benchmark build): the audio is noise"


@dataclass(frozen=True)
class ServiceConfig:
    voices_dir: Path
    limits: Limits = Limits()
    ref_allow_http: bool = False
    upload: Callable[[str, bytes], str] | None = None  # (file name, data) -> URL; None: no bucket configured


class Service:
    def __init__(self, engine: Engine, config: ServiceConfig):
        self.engine = engine
        self.config = config
        self.references: VoiceCache[np.ndarray] = VoiceCache()

    # -- the reference voice ----------------------------------------------------------

    def _voice_files(self, name: str) -> tuple[Path, str]:
        voices = self.config.voices_dir.resolve()
        for suffix in VOICE_SUFFIXES:
            path = (voices / f"{name}{suffix}").resolve()
            if path.parent == voices and path.is_file():  # the name was validated; this is belt and braces
                text_file = path.with_suffix(".txt")
                return path, text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else ""
        known = sorted({p.stem for p in voices.glob("*") if p.suffix in VOICE_SUFFIXES}) if voices.is_dir() else []
        raise RequestError(
            f"voice {name!r} is not stored on this worker; known voices: {', '.join(known) or 'none'} "
            f"(add <name>.wav and <name>.txt to {self.config.voices_dir})", field="ref_audio")

    def reference(self, request: SynthesisRequest, cancelled: Callable[[], bool] | None = None) -> Reference:
        ref, ref_text = request.ref_audio, request.ref_text
        limits = self.config.limits
        if isinstance(ref, RefVoice):
            path, stored_text = self._voice_files(ref.name)
            data = path.read_bytes()
            ref_text = ref_text or stored_text
        elif isinstance(ref, RefURL):
            data = fetch_reference(ref.url, allow_http=self.config.ref_allow_http,
                                   max_bytes=limits.max_ref_bytes, timeout_s=limits.download_timeout_s)
        else:
            assert isinstance(ref, RefBytes)
            data = ref.data
        if not ref_text:
            raise RequestError("ref_text is required: the words spoken in ref_audio (transcription is not enabled "
                               "on this worker)", field="ref_text")
        samples = self.references.get_or_prepare(
            data, lambda d: audio.prepare_reference(d, max_seconds=limits.max_ref_seconds))
        return self.engine.reference(samples, ref_text)

    # -- synthesis ---------------------------------------------------------------------

    @staticmethod
    def params(request: SynthesisRequest) -> SynthesisParams:
        return SynthesisParams(speed=request.speed, nfe_step=request.nfe_step, cfg_strength=request.cfg_strength,
                               sway_sampling_coef=request.sway_sampling_coef,
                               cross_fade_duration=request.cross_fade_duration,
                               seed=request.seed if request.seed is not None else int(uuid.uuid4().int % 2**31),
                               remove_silence=request.remove_silence)

    def _describe(self, request: SynthesisRequest, params: SynthesisParams, samples: int) -> dict:
        info = self.engine.info()
        result = {
            "format": request.output_format,
            "sample_rate": request.sample_rate,
            "duration_s": round(samples / audio.MODEL_SAMPLE_RATE, 3),
            "seed": params.seed,
            "model": info["model"],
            "attn_backend": info["attention"]["single"],  # "sdpa" | "flash_attn"; a mixed batch's: engine.attention
        }
        if info["random_weights"]:
            result["note"] = RANDOM_WEIGHTS_NOTE
        return result

    def _deliver(self, request: SynthesisRequest, data: bytes) -> dict:
        large = len(data) > INLINE_MAX_BYTES
        if request.delivery == "s3" or (large and self.config.upload):
            if not self.config.upload:
                raise RequestError("output delivery 's3' needs a bucket: the operator sets BUCKET_ENDPOINT_URL, "
                                   "BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY", field="delivery")
            return {"audio_url": self.config.upload(f"{uuid.uuid4().hex}.{request.output_format}", data)}
        if large:
            raise AudioError(f"the output is {len(data) / 1024**2:.1f} MB, over the {INLINE_MAX_BYTES // 1024**2} MB "
                             "that fits inline; send shorter text, or ask the operator to configure a bucket")
        return {"audio": base64.b64encode(data).decode()}

    def run(self, payload: object, cancelled: Callable[[], bool] | None = None) -> dict:
        """The whole job; returns the result or ``{"error": message}``."""
        try:
            request = parse_request(payload, self.config.limits)
            data, result = self.render(request, cancelled)
            return result | self._deliver(request, data)
        except Exception as exc:  # every failure is an answer; the worker keeps serving
            return self._failure(exc)

    @staticmethod
    def _failure(exc: Exception) -> dict:
        if isinstance(exc, ServingError):
            event(log, "request rejected", phase="serve", error=str(exc))
            return {"error": str(exc)}
        if isinstance(exc, Cancelled):
            return {"error": f"job cancelled ({exc})"}
        log.error("request failed", exc_info=exc, extra={"phase": "serve"})
        return {"error": "internal error while synthesising; the worker logged the details"}

    def render(self, request: SynthesisRequest, cancelled: Callable[[], bool] | None = None) -> tuple[bytes, dict]:
        """The encoded audio file and what describes it; raises ``ServingError`` for bad input."""
        started = time.monotonic()
        reference = self.reference(request, cancelled)
        params = self.params(request)
        samples = self.engine.synthesize(reference, request.text, params, cancelled)
        audio.check_output_duration(len(samples), audio.MODEL_SAMPLE_RATE, self.config.limits.max_output_seconds)
        data = audio.encode(samples, request.sample_rate, request.output_format)
        result = self._describe(request, params, len(samples))
        result["seconds"] = round(time.monotonic() - started, 3)
        event(log, "request done", phase="serve", duration_s=result["duration_s"], seconds=result["seconds"],
              format=request.output_format)
        return data, result

    def stream(self, payload: object, cancelled: Callable[[], bool] | None = None) -> Iterator[dict]:
        """Audio as it is made: one complete file of the requested format per piece, each under 1 MB."""
        try:
            request = parse_request(payload, self.config.limits)
            reference = self.reference(request, cancelled)
            params = self.params(request)
            made, index = 0, 0
            piece = int(STREAM_PIECE_SECONDS * audio.MODEL_SAMPLE_RATE)
            for wave in self.engine.stream(reference, request.text, params, cancelled):
                for start in range(0, len(wave), piece):
                    part = wave[start:start + piece]
                    made += len(part)
                    audio.check_output_duration(made, audio.MODEL_SAMPLE_RATE, self.config.limits.max_output_seconds)
                    data = audio.encode(part, request.sample_rate, request.output_format)
                    yield {"index": index, "audio": base64.b64encode(data).decode(),
                           **self._describe(request, params, len(part))}
                    index += 1
        except Exception as exc:
            yield self._failure(exc)
