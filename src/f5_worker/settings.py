"""The worker's settings: one typed object, read from the environment once, at start.

Every variable is declared once, in ``VARIABLES``: its name, the ``Settings`` field it
sets, how its text is parsed, and its default as the README's configuration table
shows it (a test holds the README and this table equal). The defaults themselves are
the constants below. Variables carry the ``F5_WORKER_`` prefix, except the bucket's,
which keep the names RunPod's SDK reads. Explicit arguments to ``Settings.from_env``
(``overrides``) win over the environment, so tests and the CLI never mutate
``os.environ`` to change a setting.

Nothing else in the worker reads these variables or spells their names: messages that
name a setting ask ``env_name(field)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = ["Settings", "Variable", "VARIABLES", "env_name", "PREFIX", "RUNPOD_VOLUME", "UPSTREAM_RELEASES_URL",
           "ASR_OFF", "DEFAULT_ASR_MODEL"]

PREFIX = "F5_WORKER_"
RUNPOD_VOLUME = Path("/runpod-volume")
LOCAL_VOLUME = Path("~/.cache/f5-worker-volume")
# Where RunPod puts an endpoint's cached models (read in place, whatever volume we use).
RUNPOD_HF_CACHE = RUNPOD_VOLUME / "huggingface-cache" / "hub"
# Places older setups left model files: a directory baked into the image, the user's old hub cache,
# cached_path's cache (F5-TTS's default loader), an app directory.
LEGACY_MODEL_DIRS = (Path("/models"), Path("~/.cache/huggingface/hub"), Path("~/.cache/cached_path"), Path("/app"))
DEFAULT_MODEL = "F5TTS_v1_Base"
TINY_RANDOM = "tiny-random"  # the real architectures, tiny, random weights: tests and offline smoke runs
UPSTREAM_RELEASES_URL = "https://github.com/Dao-AILab/flash-attention/releases/download"
FLASH_ATTN_MODES = ("off", "auto", "require")
FA4_MODES = ("off", "auto")
FA4_INDEX = "https://pypi.org/simple"
LOG_FORMATS = ("json", "text")
DEFAULT_DOWNLOAD_TIMEOUT_S = 30.0
DEFAULT_DOWNLOAD_RETRIES = 3
# A wheel of a few hundred MB at a slow 2 MB/s; inside RunPod's 7-minute init limit.
DEFAULT_DOWNLOAD_DEADLINE_S = 240.0
# RunPod sends SIGKILL some time after SIGTERM; finish jobs in flight within this, then exit.
DEFAULT_SHUTDOWN_TIMEOUT_S = 60.0
# The biggest upstream flash-attn wheels are a few hundred MB; anything far past that is not a wheel we want.
MAX_WHEEL_BYTES = 2 * 1024**3
DEFAULT_VERIFY_TIMEOUT_S = 180.0
# Serving
DEFAULT_BATCH_WINDOW_MS = 5.0
DEFAULT_MAX_TEXT_CHARS = 5_000  # F5-TTS chunks long text itself; this bounds one job's work
DEFAULT_MAX_REF_BYTES = 10 * 1024**2  # about 3.6 min of 24 kHz 16-bit wav; RunPod caps /run bodies at 10 MB
DEFAULT_MAX_REF_SECONDS = 60.0  # F5-TTS keeps only ~12 s of it anyway (serving/refclip.py)
DEFAULT_MAX_OUTPUT_SECONDS = 300.0
DEFAULT_REF_DOWNLOAD_TIMEOUT_S = 15.0  # the whole reference fetch: DNS, connect, redirects, body
DEFAULT_MAX_WAIT_S = 30.0
# Transcription of references given without their text: F5-TTS's own choice of model.
DEFAULT_ASR_MODEL = "openai/whisper-large-v3-turbo"
ASR_OFF = "off"
# The voice OpenAI's voice names (alloy, echo...) speak with: one of the built-in voices.
DEFAULT_VOICE = "basic_ref_en"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_UNSET = object()  # a parser's answer for "keep the default" (an empty value, for instance)


# -- parsers: (variable name, raw text) -> value ---------------------------------------------------

def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    if value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    return value


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must be 0 or more")
    return value


def _positive_int(name: str, raw: str) -> int:
    value = _int(name, raw)
    if value == 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value


def _int_or_auto(name: str, raw: str) -> int:
    return 0 if raw.strip().lower() == "auto" else _int(name, raw)


def _gpus(name: str, raw: str):
    """``all``, a count (``2``: the first two visible GPUs) or a comma list of indices (``0,2``), normalised."""
    value = raw.strip().lower().replace(" ", "")
    if not value:
        return _UNSET
    if value == "all":
        return value
    listed = "," in value  # "1": a count (the first GPU); "1,": GPU 1 alone
    items = value.rstrip(",").split(",") if listed else [value]
    if (not all(item.isdigit() for item in items) or (not listed and int(value) == 0)
            or len({int(item) for item in items}) < len(items)):
        raise ConfigError(f"{name}={raw!r} is not all, a count of GPUs (1 or more) or a comma list of distinct "
                          "GPU indices such as 0,1 (1, for GPU 1 alone)")
    return ",".join(str(int(item)) for item in items) + ("," if listed and len(items) == 1 else "")


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _lower(name: str, raw: str) -> str:
    return raw.strip().lower()


def _text_or_unset(name: str, raw: str):
    return raw.strip() or _UNSET


def _path_or_unset(name: str, raw: str):
    return Path(raw.strip()).expanduser() if raw.strip() else _UNSET


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item for item in raw.replace(",", " ").split() if item)


def _strings(name: str, raw: str) -> tuple[str, ...]:
    return _list(raw)


def _paths(name: str, raw: str) -> tuple[Path, ...]:
    return tuple(Path(p) for p in _list(raw))


def _sha256_pins(name: str, raw: str) -> Mapping[str, str]:
    pins: dict[str, str] = {}
    for item in _list(raw):
        filename, sep, digest = item.partition("=")
        digest = digest.lower()
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(
                f"{name}: {item!r} is not FILENAME=SHA256 (64 hex digits); separate several pins with commas"
            )
        pins[filename] = digest
    return pins


def _asr_model(name: str, raw: str):
    value = raw.strip()
    if not value:
        return _UNSET
    return ASR_OFF if value.lower() in (ASR_OFF, "none", "false", "0") else value


@dataclass(frozen=True)
class Variable:
    """One environment variable: the field it sets, its parser, and its default as the README shows it."""

    name: str  # the full variable name
    field: str  # the Settings field
    parse: Callable[[str, str], object]
    readme_default: str  # the README table's default column, verbatim


def _v(suffix: str, field_name: str, parse, readme_default: str) -> Variable:
    return Variable(PREFIX + suffix, field_name, parse, readme_default)


VARIABLES: tuple[Variable, ...] = (
    _v("VOLUME", "volume", _path_or_unset,
       "`/runpod-volume` when mounted and writable, else `~/.cache/f5-worker-volume`"),
    _v("FLASH_ATTN", "flash_attn", _lower, "`auto`"),
    _v("FLASH_ATTN_VERSION", "flash_attn_version", lambda n, r: r.strip() or "auto", "`auto`"),
    _v("FLASH_ATTN_MIRRORS", "flash_attn_mirrors", _strings, "none"),
    _v("FLASH_ATTN_SHA256", "flash_attn_sha256", _sha256_pins, "none"),
    _v("FLASH_ATTN_UPSTREAM", "flash_attn_upstream", _text, f"`{UPSTREAM_RELEASES_URL}`"),
    _v("FA4", "fa4", _lower, "`auto`"),
    _v("FA4_INDEX", "fa4_index", _text, f"`{FA4_INDEX}`"),
    _v("ALLOW_HTTP", "allow_http", _bool, "`false`"),
    _v("DOWNLOAD_TIMEOUT", "download_timeout_s", _float, "`30`"),
    _v("DOWNLOAD_DEADLINE", "download_deadline_s", _float, "`240`"),
    _v("SHUTDOWN_TIMEOUT", "shutdown_timeout_s", _float, "`60`"),
    _v("DOWNLOAD_RETRIES", "download_retries", _int, "`3`"),
    _v("VERIFY_TIMEOUT", "verify_timeout_s", _float, "`180`"),
    _v("MODEL", "model", _text, f"`{DEFAULT_MODEL}`"),
    _v("CKPT", "ckpt", _text_or_unset, "(the model's)"),
    _v("VOCAB", "vocab", _text_or_unset, "(the model's)"),
    _v("HF_CACHE", "hf_cache", _path_or_unset, "`<volume>/huggingface-cache/hub`"),
    _v("LEGACY_MODEL_DIRS", "legacy_model_dirs", _paths, "`" + " ".join(map(str, LEGACY_MODEL_DIRS)) + "`"),
    _v("OFFLINE", "offline", _bool, "`false`"),
    _v("CONCURRENCY", "concurrency", _int_or_auto, "`auto`"),
    _v("MAX_BATCH", "max_batch", _int_or_auto, "`auto`"),
    _v("GPUS", "gpus", _gpus, "`all`"),
    _v("BATCH_WINDOW_MS", "batch_window_ms", _float, "`5`"),
    _v("STREAMING", "streaming", _bool, "`false`"),
    _v("VOICES_DIR", "voices_dir", _path_or_unset, "`<volume>/f5-worker/voices`"),
    _v("DEFAULT_VOICE", "default_voice", _text, f"`{DEFAULT_VOICE}`"),
    _v("ASR_MODEL", "asr_model", _asr_model, f"`{DEFAULT_ASR_MODEL}`"),
    _v("ASR_PRELOAD", "asr_preload", _bool, "`false`"),
    _v("MAX_TEXT_CHARS", "max_text_chars", _positive_int, "`5000`"),
    _v("MAX_REF_BYTES", "max_ref_bytes", _positive_int, "`10485760`"),
    _v("MAX_REF_SECONDS", "max_ref_seconds", _float, "`60`"),
    _v("MAX_OUTPUT_SECONDS", "max_output_seconds", _float, "`300`"),
    _v("REF_DOWNLOAD_TIMEOUT", "ref_download_timeout_s", _float, "`15`"),
    _v("REF_ALLOW_HTTP", "ref_allow_http", _bool, "`false`"),
    _v("API_KEY", "api_key", _text_or_unset, "none"),
    _v("MAX_WAIT_S", "max_wait_s", _float, "`30`"),
    _v("LOG_FORMAT", "log_format", _lower, "`json`"),
    # The bucket, under the names RunPod's SDK (rp_upload) reads.
    Variable("BUCKET_ENDPOINT_URL", "bucket_endpoint_url", _text_or_unset, "none"),
    Variable("BUCKET_ACCESS_KEY_ID", "bucket_access_key_id", _text_or_unset, "none"),
    Variable("BUCKET_SECRET_ACCESS_KEY", "bucket_secret_access_key", _text_or_unset, "none"),
)
_BY_FIELD = {v.field: v for v in VARIABLES}


def env_name(field_name: str) -> str:
    """The environment variable that sets ``field_name`` (for messages that tell an operator what to change)."""
    return _BY_FIELD[field_name].name


def default_volume() -> Path:
    """``/runpod-volume`` when it is mounted and writable, else a local directory."""
    if RUNPOD_VOLUME.is_dir() and os.access(RUNPOD_VOLUME, os.W_OK):
        return RUNPOD_VOLUME
    return LOCAL_VOLUME.expanduser()


@dataclass(frozen=True)
class Settings:
    volume: Path
    flash_attn: str = "auto"
    flash_attn_version: str = "auto"
    flash_attn_mirrors: tuple[str, ...] = ()
    flash_attn_sha256: Mapping[str, str] = field(default_factory=dict)
    flash_attn_upstream: str = UPSTREAM_RELEASES_URL
    fa4: str = "auto"  # FlashAttention-4 (f5_worker.fa4, fa4_fetch): auto (fetched, checked, used if faster) or off
    fa4_index: str = FA4_INDEX  # where the pinned FA4 set is fetched from; empty: never fetched
    allow_http: bool = False
    download_timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S
    download_retries: int = DEFAULT_DOWNLOAD_RETRIES
    download_deadline_s: float = DEFAULT_DOWNLOAD_DEADLINE_S
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    verify_timeout_s: float = DEFAULT_VERIFY_TIMEOUT_S
    model: str = DEFAULT_MODEL
    ckpt: str | None = None
    vocab: str | None = None
    hf_cache: Path | None = None  # None: <volume>/huggingface-cache/hub
    legacy_model_dirs: tuple[Path, ...] = LEGACY_MODEL_DIRS
    offline: bool = False
    # Serving
    voices_dir: Path | None = None  # None: <volume>/f5-worker/voices
    default_voice: str = DEFAULT_VOICE  # what OpenAI's voice names (alloy, echo...) speak with
    asr_model: str = DEFAULT_ASR_MODEL  # transcribes references sent without text; "off": ref_text required
    asr_preload: bool = False  # load the ASR model in the background at start, not on first need
    concurrency: int = 0  # jobs one worker takes at once; 0: auto, as many as the engine batches
    max_batch: int = 0  # text chunks sampled in one batch at most; 0: auto, measured on the GPU at start
    gpus: str = "all"  # GPUs to serve on, one engine each: "all", a count ("2"), indices ("0,2"; "1,": GPU 1 alone)
    batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS  # how long a lone chunk waits for others (engine.batcher)
    streaming: bool = False  # the RunPod handler yields audio chunk by chunk
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_ref_bytes: int = DEFAULT_MAX_REF_BYTES
    max_ref_seconds: float = DEFAULT_MAX_REF_SECONDS
    max_output_seconds: float = DEFAULT_MAX_OUTPUT_SECONDS
    ref_download_timeout_s: float = DEFAULT_REF_DOWNLOAD_TIMEOUT_S
    ref_allow_http: bool = False
    log_format: str = "json"
    # The HTTP API (`serve`)
    api_key: str | None = field(default=None, repr=False)  # F5_WORKER_API_KEY: Bearer token for every route but /ping, /health
    max_wait_s: float = DEFAULT_MAX_WAIT_S  # a synthesis that could not start within this long is refused (429, Retry-After)
    # The bucket outputs go to (delivery "s3", or too large for inline)
    bucket_endpoint_url: str | None = None
    bucket_access_key_id: str | None = field(default=None, repr=False)
    bucket_secret_access_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.flash_attn not in FLASH_ATTN_MODES:
            raise ConfigError(
                f"{env_name('flash_attn')}={self.flash_attn!r} is not one of {', '.join(FLASH_ATTN_MODES)}"
            )
        if self.fa4 not in FA4_MODES:
            raise ConfigError(f"{env_name('fa4')}={self.fa4!r} is not one of {', '.join(FA4_MODES)}")
        if self.concurrency < 0 or self.max_batch < 0:
            raise ConfigError(f"{env_name('concurrency')} and {env_name('max_batch')} must be 0 (auto) or more")
        if not 0 <= self.batch_window_ms <= 1000:
            raise ConfigError(f"{env_name('batch_window_ms')}={self.batch_window_ms:g} must be between 0 and 1000")
        if self.max_wait_s <= 0:
            raise ConfigError(f"{env_name('max_wait_s')}={self.max_wait_s:g} must be more than 0 seconds")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"{env_name('log_format')}={self.log_format!r} is not json or text")
        if not self.asr_model.strip():
            raise ConfigError(f"{env_name('asr_model')} is empty; name a Whisper model, a directory, or off")
        for name in ("max_text_chars", "max_ref_bytes", "max_ref_seconds", "max_output_seconds",
                     "ref_download_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ConfigError(f"{env_name(name)}={value!r} must be a finite number greater than 0")

    @property
    def root(self) -> Path:
        """The one directory on the volume that holds all of the worker's files."""
        return self.volume / "f5-worker"

    @property
    def voices(self) -> Path:
        """Stored reference voices (``voices.store``)."""
        return self.voices_dir or self.root / "voices"

    @property
    def hub_cache(self) -> Path:
        """The Hugging Face hub cache the worker uses and fills (``HF_HUB_CACHE``)."""
        return self.hf_cache or self.volume / "huggingface-cache" / "hub"

    @property
    def bucket(self) -> bool:
        """Whether the operator configured a bucket the way RunPod's SDK expects (all three variables)."""
        return bool(self.bucket_endpoint_url and self.bucket_access_key_id and self.bucket_secret_access_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values: dict = {}
        for variable in VARIABLES:
            if variable.name in env:
                value = variable.parse(variable.name, env[variable.name])
                if value is not _UNSET:
                    values[variable.field] = value
        if "offline" not in values and env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
            values["offline"] = True  # the standard switch means the same to us
        values.update(overrides)
        values.setdefault("volume", default_volume())
        return cls(**values)

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)
