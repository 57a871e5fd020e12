"""Every error the worker raises on purpose.

    F5WorkerError
    ├── ConfigError(ValueError)            a setting or argument has a value we cannot use
    │   ├── InvalidVersionRequest          F5_WORKER_FLASH_ATTN_VERSION is not auto/exact/range
    │   └── BadModelRef                    F5_WORKER_MODEL / _CKPT / _VOCAB names nothing we can fetch
    ├── FetchError(OSError)                a download failed (after retries)
    │   ├── FetchTimeout(TimeoutError)
    │   ├── HTTPStatusError                the server answered 4xx/5xx
    │   ├── DownloadTooLarge               the body passed the size cap
    │   └── ChecksumMismatch               sha256 of the body is not the pinned one
    ├── WheelError                         a fetched wheel cannot be installed
    │   ├── CorruptWheel                   not a readable zip / bad CRC / no dist-info
    │   ├── NotAFlashAttnWheel(ValueError) a name or a file that is not a flash-attn wheel
    │   └── InstallFailed                  pip refused it (its output is attached)
    ├── VerificationFailed                 the install imported badly or computed wrong numbers (``stage``)
    │   ├── VerificationTimeout(TimeoutError)  the check did not finish in time: says nothing about the wheel
    │   └── VerificationCrashed            the check process died without a result (a signal, a hard exit)
    ├── FlashAttnRequired                  F5_WORKER_FLASH_ATTN=require and no wheel could be activated
    ├── HubUnreachable(ConnectionError)    the Hugging Face hub could not be reached (``cause`` names why)
    └── ModelUnavailable(FileNotFoundError) a model file is missing or broken and could not be fetched;
                                           names each file and every place looked

Decisions are taken on these types and their fields, never on message text.

Each message names the value, the rule it broke and what to do next. Foreign
exceptions (httpx, OSError from the volume, pip's exit status) are mapped to
these at the boundary where they happen and chained with ``from``.
"""

from __future__ import annotations

__all__ = [
    "F5WorkerError",
    "ConfigError",
    "InvalidVersionRequest",
    "FetchError",
    "FetchTimeout",
    "HTTPStatusError",
    "DownloadTooLarge",
    "ChecksumMismatch",
    "WheelError",
    "CorruptWheel",
    "NotAFlashAttnWheel",
    "InstallFailed",
    "VerificationFailed",
    "VerificationTimeout",
    "VerificationCrashed",
    "FlashAttnRequired",
    "HubUnreachable",
    "BadModelRef",
    "ModelUnavailable",
]


class F5WorkerError(Exception):
    """Base class of the worker's own errors."""


class ConfigError(F5WorkerError, ValueError):
    pass


class InvalidVersionRequest(ConfigError):
    def __init__(self, request: str, detail: str):
        self.request = request
        super().__init__(
            f"flash-attn version request {request!r} is not valid ({detail}); "
            "use 'auto', an exact version such as '2.8.3.post2', or a range such as '>=2.7,<2.9'"
        )


class FetchError(F5WorkerError, OSError):
    def __init__(self, url: str, message: str):
        self.url = url
        super().__init__(f"{message}: {url}")


class FetchTimeout(FetchError, TimeoutError):
    pass


class HTTPStatusError(FetchError):
    def __init__(self, url: str, status: int):
        self.status = status
        super().__init__(url, f"server answered HTTP {status}")


class DownloadTooLarge(FetchError):
    def __init__(self, url: str, limit: int):
        self.limit = limit
        super().__init__(url, f"download exceeds the size cap of {limit} bytes")


class ChecksumMismatch(FetchError):
    def __init__(self, url: str, expected: str, actual: str):
        self.expected, self.actual = expected, actual
        super().__init__(url, f"sha256 is {actual}, expected {expected} (pinned or from the mirror's index)")


class WheelError(F5WorkerError):
    pass


class CorruptWheel(WheelError):
    pass


class NotAFlashAttnWheel(WheelError, ValueError):
    """A file name, or a wheel's own METADATA, that is not flash-attn's (``why`` says which part)."""

    def __init__(self, filename: str, why: str):
        self.filename, self.why = filename, why
        super().__init__(f"{filename!r} is not an upstream-style flash-attn wheel name: {why}")


class InstallFailed(WheelError):
    def __init__(self, wheel: str, output: str):
        self.output = output
        tail = output.strip().splitlines()[-1] if output.strip() else "no output"
        super().__init__(f"pip could not install {wheel}: {tail}")


class VerificationFailed(F5WorkerError):
    """The check child reported a failure (``stage``: import, numerics, timing) about this wheel."""

    def __init__(self, wheel: str, reason: str, stage: str | None = None):
        self.wheel, self.reason, self.stage = wheel, reason, stage
        super().__init__(f"{wheel} failed verification: {reason}")


class VerificationTimeout(VerificationFailed, TimeoutError):
    """The check did not finish in time: a busy or slow machine as much as a hung wheel, so it is not
    remembered against the wheel (the next start tries it again)."""

    def __init__(self, wheel: str, timeout_s: float):
        self.timeout_s = timeout_s
        super().__init__(wheel, f"the check did not finish within {timeout_s:.0f} s (hung on import or on the GPU); "
                                "raise F5_WORKER_VERIFY_TIMEOUT if the machine is only slow")


class VerificationCrashed(VerificationFailed):
    """The check process died without reporting (``returncode``: negative for a signal)."""

    def __init__(self, wheel: str, reason: str, returncode: int):
        self.returncode = returncode
        super().__init__(wheel, reason, stage="import")


class FlashAttnRequired(F5WorkerError):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(
            f"F5_WORKER_FLASH_ATTN=require, but no flash-attn wheel could be activated: {reason}. "
            "Run 'f5-worker doctor' for the full plan, add a mirror with F5_WORKER_FLASH_ATTN_MIRRORS, "
            "or set F5_WORKER_FLASH_ATTN=auto to fall back to PyTorch SDPA."
        )


class HubUnreachable(F5WorkerError, ConnectionError):
    """The Hugging Face hub could not be reached (DNS, refused, timed out): asking again for the next
    file would only wait as long again."""

    def __init__(self, endpoint: str | None, cause: str):
        self.endpoint, self.cause = endpoint, cause
        where = f" at {endpoint}" if endpoint else ""
        super().__init__(f"hub unreachable{where} ({cause}); check the network and HF_ENDPOINT, "
                         "or set F5_WORKER_OFFLINE=true with the model already in the cache")


class BadModelRef(ConfigError):
    def __init__(self, setting: str, value: str, detail: str):
        self.setting, self.value = setting, value
        super().__init__(
            f"F5_WORKER_{setting}={value!r}: {detail}; give a local path, or a hub file as "
            "ORG/REPO/PATH/IN/REPO (hf:// prefix allowed), e.g. SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
        )


class ModelUnavailable(F5WorkerError, FileNotFoundError):
    def __init__(self, missing: list):
        self.missing = missing
        super().__init__(
            "model files unavailable: " + "; ".join(str(m) for m in missing)
            + ". Put them in the hub cache (see README: Model cache), let the worker reach the hub "
            "(unset F5_WORKER_OFFLINE, check HF_ENDPOINT and the network), point F5_WORKER_CKPT at a local file, "
            "or try the worker without weights with F5_WORKER_MODEL=tiny-random (its audio is noise)."
        )
