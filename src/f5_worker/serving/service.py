"""One synthesis job, start to finish, one pipeline for every output:

    prepare(payload) -> Job     validate; pick the seed; split the text by [voice] tags; get, decode and clip
                                each reference (fetched, inline, stored or built in); find its words (given,
                                the voice's, or transcribed); the engine's parameters
    waves(job)                  the engine's audio, segment after segment, cross-faded: what both outputs consume
    render(job) -> bytes, meta  the whole file (RunPod jobs, /runsync, OpenAI's flac)
    stream(job) -> pieces       one complete file per ~10 s piece (a streamed RunPod job)

Both outputs apply ``remove_silence`` with the one silence algorithm (``refclip``), check the
output's length, and deliver the same way (inline, or a bucket for ``delivery: "s3"``). The
RunPod handler and the local API also run the voice actions here (``voices.list``,
``voices.create``, ``voices.delete``).

Every failure a request can cause becomes a ``ServingError`` whose message is safe to return
as ``{"error": ...}``; anything else is a bug, logged with its traceback and answered with a
generic error, and the worker keeps serving either way.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import params as defaults
from ..engine.engine import Cancelled, Engine, Reference, SynthesisParams
from ..log import event, get_logger
from ..settings import DEFAULT_VOICE, Settings, env_name
from ..voices.store import Voice, VoiceStore, check_name
from . import audio
from .errors import (AudioError, PayloadTooLarge, RequestError, ServingError, TranscriptionUnavailable,
                     VoiceNotFound)
from .fetch import fetch_reference
from .refclip import LongSilenceFilter, remove_long_silences
from .request import (Limits, RefBytes, RefURL, RefVoice, SynthesisRequest, classify_ref_audio, parse_request,
                      _text as text_field)
from .segments import split_voices
from .voice_cache import VoiceCache

__all__ = ["Service", "ServiceConfig", "Job", "Segment", "INLINE_MAX_BYTES", "STREAM_PIECE_SECONDS",
           "bucket_uploader", "ACTIONS"]

log = get_logger("serving")
# RunPod caps a job's result payload; base64 grows bytes by 4/3, so inline audio stays under ~15 MB of text.
INLINE_MAX_BYTES = 11 * 1024**2
# Streamed pieces must each stay under RunPod's 1 MB stream limit: 10 s of 24 kHz 16-bit wav is
# 480 KB, 640 KB in base64.
STREAM_PIECE_SECONDS = 10.0
SEGMENT_SEED_STRIDE = 7919  # segment k of a multi-voice text samples with seed + k * this (chunks add 0, 1, 2...)
RANDOM_WEIGHTS_NOTE = "random weights (tiny-random or a benchmark build): the audio is noise"
ACTIONS = ("speech", "voices.list", "voices.create", "voices.delete")
SR = audio.MODEL_SAMPLE_RATE


def bucket_uploader(settings: Settings) -> Callable[[str, bytes], str] | None:
    """RunPod's bucket upload with the bucket the settings name; None when none is configured."""
    if not settings.bucket:
        return None
    creds = {"endpointUrl": settings.bucket_endpoint_url, "accessId": settings.bucket_access_key_id,
             "accessSecret": settings.bucket_secret_access_key}

    def upload(name: str, data: bytes) -> str:
        from runpod.serverless.utils import rp_upload  # the SDK is imported where it is used

        return rp_upload.upload_in_memory_object(name, data, bucket_creds=creds, prefix="f5-worker")

    return upload


@dataclass(frozen=True)
class ServiceConfig:
    voices_dir: Path
    limits: Limits = Limits()
    ref_allow_http: bool = False
    upload: Callable[[str, bytes], str] | None = None  # (file name, data) -> URL; None: no bucket configured
    default_voice: str = DEFAULT_VOICE  # what OpenAI's voice names speak with
    transcriber: object | None = None  # asr.Transcriber; None: transcription is off (ref_text required)

    @classmethod
    def from_settings(cls, settings: Settings, *, transcriber=None) -> ServiceConfig:
        return cls(voices_dir=settings.voices, limits=Limits.from_settings(settings),
                   ref_allow_http=settings.ref_allow_http, upload=bucket_uploader(settings),
                   default_voice=settings.default_voice, transcriber=transcriber)


@dataclass(frozen=True)
class Segment:
    voice: str  # "main" (the request's own voice) or the name in its [tag]
    text: str
    reference: Reference


@dataclass(frozen=True)
class Job:
    """A prepared job: everything the engine needs, decided once (the seed included)."""

    request: SynthesisRequest
    params: SynthesisParams  # the engine's; remove_silence is the service's, applied to the output
    segments: tuple[Segment, ...]
    transcripts: tuple[dict, ...] = ()  # {"voice", "text", "model", "cached"} for each reference transcribed here
    notes: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)


class Service:
    def __init__(self, engine: Engine, config: ServiceConfig):
        self.engine = engine
        self.config = config
        self.voices = VoiceStore(config.voices_dir, config.default_voice)
        self.references: VoiceCache[np.ndarray] = VoiceCache()  # sent or fetched audio, decoded and clipped
        self.stored: VoiceCache[np.ndarray] = VoiceCache()  # stored voices' samples, read as they are

    @property
    def transcriber(self):
        return self.config.transcriber

    def model_names(self) -> tuple[str, ...]:
        from .request import OPENAI_MODEL_ALIASES

        return (self.engine.info()["model"], *OPENAI_MODEL_ALIASES)

    # -- prepare: one job from a payload --------------------------------------------------------

    def prepare(self, payload: object, cancelled: Callable[[], bool] | None = None) -> Job:
        """Validate ``payload`` (a job's input, or a parsed request) and get everything synthesis needs."""
        request = payload if isinstance(payload, SynthesisRequest) else parse_request(payload, self.config.limits)
        seed = request.seed if request.seed is not None else random.randrange(defaults.SEED_MAX + 1)
        parts = split_voices(request.text)
        if not parts:
            raise RequestError("text has no words outside its [voice] tags; give the words to speak", field="text")
        prepared: dict[str | None, tuple[Reference, dict | None, str | None]] = {}
        for name, _words in parts:
            if name not in prepared:
                if name is None:
                    prepared[None] = self._reference(request.ref_audio, request.ref_text, cancelled)
                else:
                    prepared[name] = self._tagged(name, cancelled)
        transcripts, notes = [], []
        for name, (_ref, transcript, problem) in prepared.items():
            if transcript is not None:
                transcripts.append({"voice": name or "main", **transcript})
                notes.append(f"ref_text of voice {name or 'main'} was transcribed by {transcript['model']}: "
                             f"{transcript['text']!r}" + (f"; it looks wrong ({problem}): send ref_text" if problem
                                                           else ""))
        segments = tuple(Segment(name or "main", words, prepared[name][0]) for name, words in parts)
        job_params = SynthesisParams(speed=request.speed, nfe_step=request.nfe_step, cfg_strength=request.cfg_strength,
                                     sway_sampling_coef=request.sway_sampling_coef,
                                     cross_fade_duration=request.cross_fade_duration, seed=seed,
                                     remove_silence=False)
        return Job(request, job_params, segments, tuple(transcripts), tuple(notes))

    def _tagged(self, name: str, cancelled) -> tuple[Reference, dict | None, str | None]:
        try:
            check_name(name, "voice")
        except RequestError:
            raise RequestError(f"text has a [{name}] tag, which cannot name a voice; voice names are 1-64 letters, "
                               "digits, '.', '_' or '-'", field="text") from None
        try:
            voice = self.voices.resolve(name)  # OpenAI's names included
        except VoiceNotFound:
            known = ", ".join(v.id for v in self.voices.list()) or "none"
            raise RequestError(f"text switches to voice [{name}], which is not a voice on this worker; known "
                               f"voices: {known} ([main] is the request's own voice)", field="text") from None
        return self._voice_reference(voice, None, cancelled)

    def _reference(self, ref, ref_text: str | None, cancelled) -> tuple[Reference, dict | None, str | None]:
        """The reference a request names, with its words: (Reference, transcript info or None, problem or None)."""
        limits = self.config.limits
        if isinstance(ref, RefVoice):
            return self._voice_reference(self.voices.resolve(ref.name), ref_text, cancelled)
        if isinstance(ref, RefURL):
            data = fetch_reference(ref.url, allow_http=self.config.ref_allow_http,
                                   max_bytes=limits.max_ref_bytes, timeout_s=limits.download_timeout_s)
        else:
            assert isinstance(ref, RefBytes)
            data = ref.data
        return self._with_text(self._prepared(data), ref_text)

    def _prepared(self, data: bytes) -> np.ndarray:
        max_seconds = self.config.limits.max_ref_seconds
        return self.references.get_or_prepare(data, lambda d: audio.prepare_reference(d, max_seconds=max_seconds))

    def _voice_reference(self, voice: Voice, ref_text: str | None, cancelled):
        data = voice.path.read_bytes()
        if voice.prepared:  # stored through the API: already the engine's samples
            samples = self.stored.get_or_prepare(data, _read_prepared)
        else:
            samples = self._prepared(data)
        return self._with_text(samples, ref_text or voice.text)

    def _with_text(self, samples: np.ndarray, text: str | None):
        if text:
            return self.engine.reference(samples, text), None, None
        transcript = self.transcribe(samples)
        info = {"text": transcript.text, "model": transcript.model, "cached": transcript.cached}
        return self.engine.reference(samples, transcript.text), info, transcript.problem

    def transcribe(self, samples: np.ndarray):
        """The words of a prepared reference (``asr``), or ``TranscriptionUnavailable`` saying what to do."""
        if self.transcriber is None:
            raise TranscriptionUnavailable(
                "ref_text is required: the words spoken in the reference (transcription is off on this worker: "
                f"{env_name('asr_model')}=off)")
        return self.transcriber.transcribe(samples, SR)

    def reference(self, request: SynthesisRequest, cancelled: Callable[[], bool] | None = None) -> Reference:
        """The request's own voice, prepared (its first segment's): a convenience for probes and benchmarks."""
        return self.prepare(request, cancelled).segments[0].reference

    # -- the audio ----------------------------------------------------------------------------

    def waves(self, job: Job, cancelled: Callable[[], bool] | None = None, *,
              first_alone: bool = False) -> Iterator[np.ndarray]:
        """The job's audio as it is made: each segment's chunks (cross-faded by the engine), segments joined
        with the same cross-fade, ``remove_silence`` applied, the output's length checked as it grows."""
        fade = int(job.params.cross_fade_duration * SR)
        streams = (self.engine.stream(segment.reference, segment.text,
                                      replace(job.params, seed=(job.params.seed + k * SEGMENT_SEED_STRIDE)
                                              % (defaults.SEED_MAX + 1)),
                                      cancelled, **({"first_alone": True} if first_alone and k == 0 else {}))
                   for k, segment in enumerate(job.segments))
        made = 0
        for wave in _join(streams, fade):
            made += len(wave)
            audio.check_output_duration(made, SR, self.config.limits.max_output_seconds)
            yield wave

    def render(self, job: Job | SynthesisRequest, cancelled: Callable[[], bool] | None = None) -> tuple[bytes, dict]:
        """The encoded audio file and what describes it; raises ``ServingError`` for bad input."""
        job = job if isinstance(job, Job) else self.prepare(job, cancelled)
        samples = np.concatenate([*self.waves(job, cancelled), np.zeros(0, np.float32)])
        if job.request.remove_silence:
            samples = remove_long_silences(samples, SR)
        data = audio.encode(samples, job.request.sample_rate, job.request.output_format)
        result = self.describe(job, len(samples))
        event(log, "request done", phase="serve", duration_s=result["duration_s"], seconds=result["seconds"],
              format=job.request.output_format, voices=len({s.voice for s in job.segments}))
        return data, result

    def pieces(self, job: Job, cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[bytes, dict]]:
        """Complete files of the requested format, one per ~10 s, as the audio is made."""
        piece = int(STREAM_PIECE_SECONDS * SR)
        waves = self.waves(job, cancelled)
        if job.request.remove_silence:
            waves = _filtered(waves, LongSilenceFilter(SR))
        buffer = np.zeros(0, np.float32)
        for wave in waves:
            buffer = np.concatenate((buffer, wave))
            while len(buffer) >= piece:
                part, buffer = buffer[:piece], buffer[piece:]
                yield audio.encode(part, job.request.sample_rate, job.request.output_format), self.describe(job, len(part))
        if len(buffer):
            yield audio.encode(buffer, job.request.sample_rate, job.request.output_format), self.describe(job, len(buffer))

    def describe(self, job: Job, samples: int) -> dict:
        info = self.engine.info()
        request = job.request
        result = {
            "format": request.output_format,
            "sample_rate": request.sample_rate,
            "duration_s": round(samples / SR, 3),
            "seed": job.params.seed,
            "model": info["model"],
            "attn_backend": info["attention"]["single"],  # "sdpa" | "flash_attn"; a mixed batch's: engine.attention
            "seconds": round(time.monotonic() - job.started, 3),
        }
        if len({s.voice for s in job.segments}) > 1:
            result["voices"] = [s.voice for s in job.segments]
        if job.transcripts:
            result["transcripts"] = list(job.transcripts)
        notes = ([RANDOM_WEIGHTS_NOTE] if info["random_weights"] else []) + list(job.notes)
        if notes:
            result["note"] = "; ".join(notes)
        return result

    def _deliver(self, request: SynthesisRequest, data: bytes) -> dict:
        large = len(data) > INLINE_MAX_BYTES
        if request.delivery == "s3" or (large and self.config.upload):
            if not self.config.upload:
                raise RequestError(f"output delivery 's3' needs a bucket: the operator sets "
                                   f"{env_name('bucket_endpoint_url')}, {env_name('bucket_access_key_id')} and "
                                   f"{env_name('bucket_secret_access_key')}", field="delivery")
            return {"audio_url": self.config.upload(f"{uuid.uuid4().hex}.{request.output_format}", data)}
        if large:
            raise AudioError(f"the output is {len(data) / 1024**2:.1f} MB, over the {INLINE_MAX_BYTES // 1024**2} MB "
                             "that fits inline; send shorter text, or ask the operator to configure a bucket")
        return {"audio": base64.b64encode(data).decode()}

    # -- jobs: the RunPod handler and the local job endpoints -----------------------------------

    def run(self, payload: object, cancelled: Callable[[], bool] | None = None) -> dict:
        """The whole job (or a voice action); returns the result or ``{"error": message}``."""
        try:
            action, body = _action(payload)
            if action != "speech":
                return self.action(action, body, cancelled)
            job = self.prepare(body, cancelled)
            data, result = self.render(job, cancelled)
            return result | self._deliver(job.request, data)
        except Exception as exc:  # every failure is an answer; the worker keeps serving
            return self._failure(exc)

    def stream(self, payload: object, cancelled: Callable[[], bool] | None = None) -> Iterator[dict]:
        """Audio as it is made: one complete file of the requested format per piece, each under 1 MB
        (or, with ``delivery: "s3"``, each piece's URL). A voice action answers in one piece."""
        try:
            action, body = _action(payload)
            if action != "speech":
                yield self.action(action, body, cancelled)
                return
            job = self.prepare(body, cancelled)
            for index, (data, result) in enumerate(self.pieces(job, cancelled)):
                yield {"index": index, **result, **self._deliver(job.request, data)}
        except Exception as exc:
            yield self._failure(exc)

    @staticmethod
    def _failure(exc: Exception) -> dict:
        if isinstance(exc, ServingError):
            event(log, "request rejected", phase="serve", error=str(exc))
            return {"error": str(exc)}
        if isinstance(exc, Cancelled):
            return {"error": f"job cancelled ({exc})"}
        log.error("request failed", exc_info=exc, extra={"phase": "serve"})
        return {"error": "internal error while synthesising; the worker logged the details"}

    # -- voices ---------------------------------------------------------------------------------

    def action(self, action: str, body: Mapping, cancelled=None) -> dict:
        """``voices.list`` | ``voices.create`` | ``voices.delete``; raises ``ServingError`` for bad input."""
        allowed = {"voices.list": (), "voices.create": ("name", "audio", "text"), "voices.delete": ("name", "id")}
        unknown = sorted(set(body) - set(allowed[action]))
        if unknown:
            raise RequestError(f"{action} takes {', '.join(allowed[action]) or 'no fields'}; unknown field "
                               f"{unknown[0]!r}", field=unknown[0])
        if action == "voices.list":
            return self.list_voices()
        if action == "voices.delete":
            name = body.get("name", body.get("id"))
            return {"deleted": self.voices.delete(name).id}
        ref = classify_ref_audio(body.get("audio"), self.config.limits.max_ref_bytes, name="audio")
        if isinstance(ref, RefVoice):
            raise RequestError("audio must be base64 audio (or a data: URL) or an https URL, not a voice name",
                               field="audio")
        check_name(body.get("name"))
        self._refuse_taken(body.get("name"))
        if isinstance(ref, RefURL):
            limits = self.config.limits
            data = fetch_reference(ref.url, allow_http=self.config.ref_allow_http, max_bytes=limits.max_ref_bytes,
                                   timeout_s=limits.download_timeout_s)
        else:
            data = ref.data
        return {"voice": self.create_voice(body.get("name"), data, body.get("text"))}

    def list_voices(self) -> dict:
        from ..voices.store import OPENAI_VOICES

        voices = [v.to_json() for v in self.voices.list()]
        return {"object": "list", "voices": voices, "data": voices,
                "default": self.config.default_voice, "openai_voices": list(OPENAI_VOICES)}

    def _refuse_taken(self, name: str) -> None:
        self.voices._refuse_taken(check_name(name))

    def create_voice(self, name: object, data: bytes, text: object = None) -> dict:
        """Store a voice: the audio decoded, limited and clipped as a ``ref_audio`` is; transcribed without text."""
        name = check_name(name)
        self._refuse_taken(name)  # before the work of decoding and transcribing
        limits = self.config.limits
        if len(data) > limits.max_ref_bytes:
            raise PayloadTooLarge(f"the audio is {len(data)} bytes, over the limit of {limits.max_ref_bytes} "
                                  f"({env_name('max_ref_bytes')}); send a shorter clip (F5-TTS uses ~12 s)",
                                  field="audio")
        given = text_field("text", text, limits.max_text_chars, required=False)
        samples = audio.prepare_reference(data, max_seconds=limits.max_ref_seconds)
        words, note = given, None
        if given is None:
            transcript = self.transcribe(samples)
            words = transcript.text
            if transcript.problem:
                note = f"the transcript looks wrong ({transcript.problem}); delete the voice and send its text"
        voice = self.voices.create(name, samples, words.strip(), transcribed=given is None,
                                   source={"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        event(log, "voice stored", phase="voices.create", voice=name, seconds=voice.seconds,
              transcribed=voice.transcribed)
        return voice.to_json() | ({"note": note} if note else {})


def _action(payload: object) -> tuple[str, object]:
    """(action, the rest of the payload): a job without ``action`` is speech."""
    if not isinstance(payload, Mapping) or "action" not in payload:
        return "speech", payload
    action = payload["action"]
    if action not in ACTIONS:
        raise RequestError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}", field="action")
    body = {k: v for k, v in payload.items() if k != "action"}
    return action, body


def _read_prepared(data: bytes) -> np.ndarray:
    """A stored voice's audio.wav: the engine's samples, written by the store (24 kHz mono float32)."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (RuntimeError, ValueError) as exc:
        raise AudioError(f"a stored voice's audio cannot be read ({exc}); delete the voice and store it again") from exc
    if rate != SR or samples.ndim != 1 or not samples.size:
        raise AudioError("a stored voice's audio is not 24 kHz mono; delete the voice and store it again")
    samples.flags.writeable = False
    return samples


def _join(streams: Iterable[Iterator[np.ndarray]], fade: int) -> Iterator[np.ndarray]:
    """Concatenate streams of audio, cross-fading where one ends and the next begins as F5-TTS joins chunks
    (``engine.crossfade``: an overlap of min(fade, what came before, what comes next)). The last ``fade``
    samples are held back until the next piece decides them."""
    held = np.zeros(0, np.float32)
    for stream in streams:
        first = True
        for wave in stream:
            wave = np.asarray(wave, dtype=np.float32)
            if first and len(held):
                n = min(fade, len(held), len(wave))
                if n > 0:
                    mixed = held[len(held) - n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
                    out = np.concatenate((held[: len(held) - n], mixed.astype(np.float32), wave[n:]))
                else:
                    out = np.concatenate((held, wave))
            else:
                out = np.concatenate((held, wave)) if len(held) else wave
            first = False
            cut = max(len(out) - fade, 0)
            if cut:
                yield out[:cut]
            held = out[cut:]
    if len(held):
        yield held


def _filtered(waves: Iterator[np.ndarray], silence: LongSilenceFilter) -> Iterator[np.ndarray]:
    for wave in waves:
        out = silence.feed(wave)
        if len(out):
            yield out
    out = silence.finish()
    if len(out):
        yield out
