"""Errors a single request can cause; the handler returns ``str(error)`` as ``{"error": ...}``.

    ServingError(F5WorkerError)               status: the HTTP status the local API answers with (400 unless said)
    ├── RequestError(ValueError)              the payload breaks the schema (names the field, rule, value)
    │   ├── VoiceNotFound(LookupError)    404 no voice of that name (the known ones are listed)
    │   ├── VoiceExists                   409 a voice of that name is already stored (or built in)
    │   ├── VoiceReadOnly                 403 a built-in voice cannot be deleted
    │   └── PayloadTooLarge               413 an upload over F5_WORKER_MAX_REF_BYTES
    ├── TranscriptionUnavailable          ref_text is missing and this worker cannot transcribe (says how to
    │                                     enable it, or to send ref_text); 503 when the ASR model failed to load
    ├── ReferenceFetchError(OSError)          the ref_audio URL was refused or could not be fetched
    │   ├── ReferenceAddressRefused           it resolves to a private/loopback/metadata address
    │   ├── ReferenceTooLarge                 the body passed the size cap
    │   └── ReferenceTimeout(TimeoutError)    the whole fetch passed its deadline
    └── AudioError(ValueError)                bytes that are not usable audio, too long, or empty;
                                              an output that cannot be produced

Messages are written for the person who sent the request: they name the value,
the rule, and what to change (a field, or the operator setting that sets the limit).
They never carry a traceback. Foreign errors (httpx, libsndfile, ffmpeg, binascii)
are mapped where they happen and chained with ``from``.
"""

from __future__ import annotations

from ..errors import F5WorkerError

__all__ = [
    "ServingError",
    "RequestError",
    "ReferenceFetchError",
    "ReferenceAddressRefused",
    "ReferenceTooLarge",
    "ReferenceTimeout",
    "AudioError",
    "VoiceNotFound",
    "VoiceExists",
    "VoiceReadOnly",
    "PayloadTooLarge",
    "TranscriptionUnavailable",
]


class ServingError(F5WorkerError):
    """Base class of errors caused by one request's input; safe to show to its sender."""

    status = 400


class RequestError(ServingError, ValueError):
    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class ReferenceFetchError(ServingError, OSError):
    def __init__(self, message: str, url: str | None = None):
        self.url = url
        super().__init__(message)

    def __str__(self) -> str:  # OSError's own __str__ would print the args tuple
        return self.args[0]


class ReferenceAddressRefused(ReferenceFetchError):
    pass


class ReferenceTooLarge(ReferenceFetchError):
    pass


class ReferenceTimeout(ReferenceFetchError, TimeoutError):
    pass


class AudioError(ServingError, ValueError):
    pass


class VoiceNotFound(RequestError, LookupError):
    status = 404


class VoiceExists(RequestError):
    status = 409


class VoiceReadOnly(RequestError):
    status = 403


class PayloadTooLarge(RequestError):
    status = 413


class TranscriptionUnavailable(ServingError):
    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)
