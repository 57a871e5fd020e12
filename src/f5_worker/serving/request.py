"""The synthesis request: one schema, validated into frozen values or a ``RequestError``.

A RunPod job's ``input`` goes through ``parse_request``; an OpenAI-style
``POST /v1/audio/speech`` body goes through ``parse_openai_speech``. Both return the
same ``SynthesisRequest``. Validation is pure (no network, no files, no audio
decoding) and strict: unknown fields, wrong types, values out of range and
booleans posing as numbers are refused, each with one message that names the
field, the rule and the value, e.g. ``nfe_step must be between 4 and 128, got 500``.

``ref_audio`` is one of three things, told apart by its shape:

    "https://host/voice.wav"          -> RefURL    (fetched later by fetch.fetch_reference)
    "data:audio/wav;base64,UklGR..."  -> RefBytes  (decoded here, size capped first)
    "UklGRiQAAABXQVZF..." (> 64 chars) -> RefBytes  (plain base64)
    "UklGRiQAAABXQVZFZm10IA=="        -> RefBytes  (shorter, but the start of an audio file: decoding says it is cut off)
    "narrator_en-1"                   -> RefVoice  (a file in the voices directory)

A voice name is 1-64 letters, digits, '.', '_' or '-', starts with a letter or
digit and never contains '..', so it can name a file but never a path.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from .. import params
from ..errors import ConfigError
from ..settings import (DEFAULT_MAX_OUTPUT_SECONDS, DEFAULT_MAX_REF_BYTES, DEFAULT_MAX_REF_SECONDS,
                        DEFAULT_MAX_TEXT_CHARS, DEFAULT_REF_DOWNLOAD_TIMEOUT_S, Settings, env_name)
from ..voices.store import OPENAI_VOICES, VOICE_NAME
from .errors import RequestError
from .formats import FORMATS, MODEL_SAMPLE_RATE, rate_problem

__all__ = [
    "Limits",
    "SynthesisRequest",
    "RefURL",
    "RefBytes",
    "RefVoice",
    "RefAudio",
    "parse_request",
    "parse_openai_speech",
    "classify_ref_audio",
    "VOICE_NAME",
    "DELIVERIES",
    "OPENAI_FORMATS",
    "DEFAULT_MAX_TEXT_CHARS",
    "DEFAULT_MAX_REF_BYTES",
    "DEFAULT_MAX_REF_SECONDS",
    "DEFAULT_MAX_OUTPUT_SECONDS",
    "DEFAULT_DOWNLOAD_TIMEOUT_S",
]

# The limits' defaults and variables are the settings' (f5_worker.settings); Limits is the part a request needs.
DEFAULT_DOWNLOAD_TIMEOUT_S = DEFAULT_REF_DOWNLOAD_TIMEOUT_S
LIMIT_SETTINGS = {  # Limits field -> the variable that sets it
    "max_text_chars": env_name("max_text_chars"),
    "max_ref_bytes": env_name("max_ref_bytes"),
    "max_ref_seconds": env_name("max_ref_seconds"),
    "max_output_seconds": env_name("max_output_seconds"),
    "download_timeout_s": env_name("ref_download_timeout_s"),
}

MAX_URL_CHARS = 2048
DELIVERIES = ("inline", "s3")
SEED_MAX = params.SEED_MAX
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_DATA_URL = re.compile(r"data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_B64_ALPHABET = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


@dataclass(frozen=True)
class Limits:
    """Per-request limits; the defaults are the module constants above."""

    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_ref_bytes: int = DEFAULT_MAX_REF_BYTES
    max_ref_seconds: float = DEFAULT_MAX_REF_SECONDS
    max_output_seconds: float = DEFAULT_MAX_OUTPUT_SECONDS
    download_timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S

    def __post_init__(self) -> None:
        for name, setting in LIMIT_SETTINGS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == math.inf:
                raise ConfigError(f"{setting}={value!r} must be a finite number greater than 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(max_text_chars=settings.max_text_chars, max_ref_bytes=settings.max_ref_bytes,
                   max_ref_seconds=settings.max_ref_seconds, max_output_seconds=settings.max_output_seconds,
                   download_timeout_s=settings.ref_download_timeout_s)


@dataclass(frozen=True)
class RefURL:
    url: str


@dataclass(frozen=True)
class RefBytes:
    data: bytes = field(repr=False)
    media_type: str | None = None  # from a data: URL, when one was given

    def __repr__(self) -> str:
        return f"RefBytes(<{len(self.data)} bytes>, media_type={self.media_type!r})"


@dataclass(frozen=True)
class RefVoice:
    name: str


RefAudio = Union[RefURL, RefBytes, RefVoice]


@dataclass(frozen=True)
class SynthesisRequest:
    """A validated request. Defaults are F5-TTS's own (``f5_worker.params``)."""

    text: str  # may switch voices with [name] tags (``segments``)
    ref_audio: RefAudio
    ref_text: str | None = None  # None: the stored voice's text, else transcribed (``asr``)
    speed: float = params.SPEED
    nfe_step: int = params.NFE_STEP
    cfg_strength: float = params.CFG_STRENGTH
    sway_sampling_coef: float = params.SWAY_SAMPLING_COEF
    cross_fade_duration: float = params.CROSS_FADE_DURATION
    seed: int | None = None  # None: a random one, chosen once by Service.prepare and reported
    remove_silence: bool = params.REMOVE_SILENCE
    output_format: str = "wav"
    sample_rate: int = MODEL_SAMPLE_RATE
    delivery: str = "inline"


# name -> (type, low, high); both bounds inclusive.
_RANGES: dict[str, tuple[type, float, float]] = {**params.RANGES, "sample_rate": (int, 8_000, 48_000)}
_FIELDS = ("text", "ref_audio", "ref_text", *_RANGES, "remove_silence", "output_format", "delivery")
# Names other APIs use for our fields: "did you mean" hints, never silent aliases.
_HINTS = {"gen_text": "text", "input": "text", "voice": "ref_audio", "ref_audio_url": "ref_audio",
          "steps": "nfe_step", "nfe": "nfe_step", "cfg": "cfg_strength", "format": "output_format",
          "response_format": "output_format", "sr": "sample_rate", "sampling_rate": "sample_rate"}
_FORMAT_HINTS = {"ogg": "opus", "wave": "wav", "raw": "pcm", "s16le": "pcm", "mpeg": "mp3"}


# -- small validators: each names the field it checks -------------------------------------------

def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _fail(name: str, message: str) -> RequestError:
    return RequestError(message, field=name)


def _fmt(x: float) -> str:
    """2.0 -> '2', 0.3 -> '0.3', 2**31 - 1 -> '2147483647'."""
    text = str(int(x)) if isinstance(x, int) or x.is_integer() else repr(x)
    return text if len(text) <= 20 else f"{text[:12]}... ({len(text)} digits)"


def _number(name: str, value: object, kind: type, low: float, high: float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, f"{name} must be a number, got {_show(value)} ({_kind(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(name, f"{name} must be a finite number, got {value}")
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise _fail(name, f"{name} must be an integer, got {value}")
    if not low <= value <= high:
        hint = "; leave it out or null for a random seed" if name == "seed" and value < 0 else ""
        raise _fail(name, f"{name} must be between {_fmt(low)} and {_fmt(high)}, got {_fmt(value)}{hint}")
    return int(value) if kind is int else float(value)


def _text(name: str, value: object, max_chars: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if value is None:
        raise _fail(name, f"{name} is required: the words to speak")
    if not isinstance(value, str):
        raise _fail(name, f"{name} must be a string, got {_show(value)} ({_kind(value)})")
    if not value.strip():
        if required:
            raise _fail(name, f"{name} is empty; give the words to speak")
        return None
    if len(value) > max_chars:
        raise _fail(name, f"{name} is {len(value)} characters, over the limit of {max_chars} "
                          f"({LIMIT_SETTINGS['max_text_chars']}); split it into several requests")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...], hints: Mapping[str, str] = {}) -> str:
    if not isinstance(value, str):
        raise _fail(name, f"{name} must be a string, one of {', '.join(choices)}; got {_show(value)} ({_kind(value)})")
    normalized = value.strip().lower()
    if normalized in choices:
        return normalized
    hint = f" (did you mean {hints[normalized]!r}?)" if normalized in hints else ""
    raise _fail(name, f"{name} must be one of {', '.join(choices)}, got {_show(value)}{hint}")


def _boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"{name} must be true or false, got {_show(value)} ({_kind(value)})")
    return value


def _check_fields(payload: object, allowed: tuple[str, ...], hints: Mapping[str, str], what: str) -> Mapping:
    if not isinstance(payload, Mapping):
        raise RequestError(f"{what} must be a JSON object, got {_kind(payload)}")
    for key in payload:
        if key in allowed:
            continue
        if not isinstance(key, str):
            raise RequestError(f"{what} has a field named {_show(key)}; field names are strings")
        guess = hints.get(key) or next(iter(difflib.get_close_matches(key, allowed, n=1)), None)
        hint = f" (did you mean {guess!r}?)" if guess else ""
        raise _fail(key, f"unknown field {_show(key)}{hint}; allowed fields: {', '.join(allowed)}")
    return payload


# -- ref_audio -----------------------------------------------------------------------------------

def _voice(name: str, value: str) -> RefVoice:
    if VOICE_NAME.fullmatch(value) and ".." not in value:
        return RefVoice(value)
    raise _fail(name, f"{name} {_show(value)} is not an https URL, base64 audio, or a voice name "
                      "(1-64 letters, digits, '.', '_' or '-', starting with a letter or digit; no '/' or '..')")


def _base64(name: str, encoded: str, max_bytes: int, media_type: str | None) -> RefBytes:
    # Cap the size from the encoded length before decoding anything: 4 characters carry 3 bytes.
    whitespace = sum(encoded.count(c) for c in " \t\r\n")
    approx = (len(encoded) - whitespace) * 3 // 4
    if approx > max_bytes + 2:
        raise _fail(name, f"{name} base64 decodes to about {approx} bytes, over the limit of {max_bytes} "
                          f"({LIMIT_SETTINGS['max_ref_bytes']}); send a shorter clip (F5-TTS uses ~12 s) "
                          "or a URL")
    compact = "".join(encoded.split()) if whitespace else encoded
    if not _B64_ALPHABET.fullmatch(compact):
        bad = next(c for c in compact if not (c.isascii() and (c.isalnum() or c in "+/-_=")))
        raise _fail(name, f"{name} is not valid base64: character {bad!r} is outside the base64 alphabet "
                          "(send an https URL, base64 audio, or a voice name)")
    if "-" in compact or "_" in compact:  # the URL-safe alphabet
        compact = compact.translate(str.maketrans("-_", "+/"))
    if "=" not in compact:
        compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(name, f"{name} is not valid base64 ({exc})") from None
    if not data:
        raise _fail(name, f"{name} base64 decodes to 0 bytes; send the reference audio")
    if len(data) > max_bytes:
        raise _fail(name, f"{name} is {len(data)} bytes, over the limit of {max_bytes} "
                          f"({LIMIT_SETTINGS['max_ref_bytes']})")
    return RefBytes(data, media_type)


# How the audio files a reference can be begin (RIFF/RF64 wav, FLAC, Ogg, MP3 with an ID3 tag, AIFF,
# Matroska/WebM, CAF): a value of 64 characters or fewer that decodes to one of these is audio cut short
# (16 bytes of a wav header, say), not a voice name.
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3\x02", b"ID3\x03", b"ID3\x04", b"FORM",
                b"\x1aE\xdf\xa3", b"caff")


def _short_base64_audio(value: str) -> bytes | None:
    """The bytes ``value`` encodes when it is base64 of the start of an audio file; None otherwise."""
    compact = value.rstrip("=").translate(str.maketrans("-_", "+/"))
    if len(compact) < 4 or not _B64_ALPHABET.fullmatch(compact) or len(compact) % 4 == 1:
        return None
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    mpeg_sync = len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0  # an MP3/AAC frame header
    return data if data.startswith(_AUDIO_MAGIC) or data[4:8] == b"ftyp" or mpeg_sync else None


def _data_url(name: str, value: str, max_bytes: int) -> RefBytes:
    match = _DATA_URL.match(value)
    if not match:
        raise _fail(name, f"{name} data URL has no ',' before its payload; use data:audio/wav;base64,...")
    media_type = match.group(1).strip().lower() or None
    params = [p.strip().lower() for p in match.group(2).split(";") if p.strip()]
    if "base64" not in params:
        raise _fail(name, f"{name} data URL must be base64-encoded (data:audio/wav;base64,...)")
    if media_type and not (media_type.startswith("audio/") or media_type in ("application/octet-stream", "application/ogg")):
        raise _fail(name, f"{name} data URL has media type {media_type!r}; send audio (data:audio/wav;base64,...)")
    return _base64(name, value[match.end():], max_bytes, media_type)


def _url(name: str, value: str) -> RefURL:
    if len(value) > MAX_URL_CHARS:
        raise _fail(name, f"{name} URL is {len(value)} characters, over the limit of {MAX_URL_CHARS}")
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise _fail(name, f"{name} URL {_show(value)} is malformed ({exc})") from None
    if not host:
        raise _fail(name, f"{name} URL {_show(value)} has no host")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise _fail(name, f"{name} URL {_show(value)} contains whitespace or control characters")
    return RefURL(value)


def classify_ref_audio(value: object, max_bytes: int, name: str = "ref_audio") -> RefAudio:
    """Tell a URL, inline audio and a voice name apart (see the module docstring)."""
    if value is None:
        raise _fail(name, f"{name} is required: an https URL, base64 audio, or the name of a stored voice")
    if not isinstance(value, str):
        raise _fail(name, f"{name} must be a string (an https URL, base64 audio, or a voice name), "
                          f"got {_kind(value)}")
    value = value.strip()
    if not value:
        raise _fail(name, f"{name} is empty; give an https URL, base64 audio, or the name of a stored voice")
    scheme = _SCHEME.match(value)
    if scheme:
        if scheme.group(1).lower() in ("https", "http"):
            return _url(name, value)
        raise _fail(name, f"{name} URL scheme {scheme.group(1)!r} is not supported; use an https URL, "
                          "base64 audio, or a voice name")
    if value[:5].lower() == "data:":
        return _data_url(name, value, max_bytes)
    if len(value) <= 64:
        head = _short_base64_audio(value)
        if head is not None:  # base64 of the start of an audio file, cut short: decoding will say so
            return RefBytes(head, None)
        return _voice(name, value)
    return _base64(name, value, max_bytes, None)


# -- the two entry points ------------------------------------------------------------------------

def parse_request(payload: object, limits: Limits = Limits()) -> SynthesisRequest:
    """Validate a RunPod job's ``input``; raise ``RequestError`` naming the first field at fault."""
    body = _check_fields(payload, _FIELDS, _HINTS, "input")
    values: dict = {
        "text": _text("text", body.get("text"), limits.max_text_chars, required=True),
        "ref_audio": classify_ref_audio(body.get("ref_audio"), limits.max_ref_bytes),
        "ref_text": _text("ref_text", body.get("ref_text"), limits.max_text_chars, required=False),
    }
    for name, (kind, low, high) in _RANGES.items():
        value = body.get(name)
        if value is not None:
            values[name] = _number(name, value, kind, low, high)
        elif name in body and name != "seed":
            raise _fail(name, f"{name} must be a number, got null; leave it out for the default")
    if body.get("remove_silence") is not None:
        values["remove_silence"] = _boolean("remove_silence", body["remove_silence"])
    if body.get("output_format") is not None:
        values["output_format"] = _choice("output_format", body["output_format"], FORMATS, _FORMAT_HINTS)
    if body.get("delivery") is not None:
        values["delivery"] = _choice("delivery", body["delivery"], DELIVERIES)
    request = SynthesisRequest(**values)
    problem = rate_problem(request.output_format, request.sample_rate)
    if problem:
        raise _fail("sample_rate", problem)
    return request


# OpenAI's response_format -> ours; aac is OpenAI's and not ours (libsndfile cannot write it).
OPENAI_FORMATS = {"mp3": "mp3", "opus": "opus", "flac": "flac", "wav": "wav", "pcm": "pcm"}
_OPENAI_FIELDS = ("model", "input", "voice", "response_format", "speed", "instructions", "stream_format", "seed")


OPENAI_STREAM_FORMATS = ("audio", "sse")  # the body's bytes as they are made, or server-sent events


def openai_stream_format(payload: Mapping) -> str:
    """The ``stream_format`` of a body ``parse_openai_speech`` accepted."""
    return payload.get("stream_format") or "audio"


# OpenAI's model names, accepted as names of the one model this worker serves (GET /v1/models lists them).
OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


def parse_openai_speech(payload: object, limits: Limits = Limits(),
                        models: tuple[str, ...] | None = None) -> SynthesisRequest:
    """Map an OpenAI ``POST /v1/audio/speech`` body onto a request.

    ``model`` must be one of ``models`` when given (the loaded model's name and OpenAI's
    ``OPENAI_MODEL_ALIASES``); ``instructions`` is accepted and ignored (F5-TTS takes its
    voice and style from the reference audio); ``voice`` names a voice (a string, or
    ``{"id": name}``): stored, built in, or one of OpenAI's names for the default voice; the
    ``input`` may switch voices with ``[name]`` tags. OpenAI returns 24 kHz audio, and so does this.
    """
    body = _check_fields(payload, _OPENAI_FIELDS, {"text": "input", "ref_audio": "voice"}, "request body")
    model = body.get("model")
    if models is not None and model is not None:
        if not isinstance(model, str) or model.strip() not in models:
            raise _fail("model", f"model {_show(model)} is not served here; use one of {', '.join(models)} "
                                 "(all the same F5-TTS model)")
    text = _text("input", body.get("input"), limits.max_text_chars, required=True)
    voice = body.get("voice")
    if isinstance(voice, Mapping) and set(voice) == {"id"}:
        voice = voice["id"]
    if voice is None:
        raise _fail("voice", f"voice is required: the name of a voice (GET /v1/audio/voices) or one of "
                             f"OpenAI's ({', '.join(OPENAI_VOICES)})")
    if not isinstance(voice, str):
        raise _fail("voice", f"voice must be the name of a voice, got {_kind(voice)}")
    ref = _voice("voice", voice.strip())
    fmt = body.get("response_format", "mp3")
    if isinstance(fmt, str) and fmt.strip().lower() == "aac":
        raise _fail("response_format", "response_format 'aac' is not supported by this server; "
                                       f"use one of {', '.join(OPENAI_FORMATS)}")
    fmt = _choice("response_format", fmt, tuple(OPENAI_FORMATS))
    stream_format = body.get("stream_format", "audio")
    if stream_format not in OPENAI_STREAM_FORMATS:
        raise _fail("stream_format", f"stream_format must be 'audio' or 'sse', got {_show(stream_format)}")
    speed_range = _RANGES["speed"]
    speed = params.SPEED if body.get("speed") is None else _number("speed", body["speed"], *speed_range)
    # An extension (the openai client's extra_body): the same seed gives the same audio, streamed or whole.
    seed = None if body.get("seed") is None else _number("seed", body["seed"], *_RANGES["seed"])
    return SynthesisRequest(text=text, ref_audio=ref, speed=speed, output_format=OPENAI_FORMATS[fmt], seed=seed)
