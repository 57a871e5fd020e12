"""The worker's settings: one typed object, read from the environment once, at start.

Every variable carries the ``F5_WORKER_`` prefix; the README lists them with their
defaults, which are the constants below. Explicit arguments to ``Settings.from_env``
(``overrides``) win over the environment, so tests and the CLI never mutate
``os.environ`` to change a setting.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = ["Settings", "PREFIX", "RUNPOD_VOLUME", "UPSTREAM_RELEASES_URL"]

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
DEFAULT_DOWNLOAD_TIMEOUT_S = 30.0
DEFAULT_DOWNLOAD_RETRIES = 3
# A wheel of a few hundred MB at a slow 2 MB/s; inside RunPod's 7-minute init limit.
DEFAULT_DOWNLOAD_DEADLINE_S = 240.0
# RunPod sends SIGKILL some time after SIGTERM; finish jobs in flight within this, then exit.
DEFAULT_SHUTDOWN_TIMEOUT_S = 60.0
# The biggest upstream flash-attn wheels are a few hundred MB; anything far past that is not a wheel we want.
MAX_WHEEL_BYTES = 2 * 1024**3
DEFAULT_VERIFY_TIMEOUT_S = 180.0


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{PREFIX}{name}={raw!r} is not a boolean; use true or false")


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{PREFIX}{name}={raw!r} must be greater than 0")
    return value


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={raw!r} is not an integer") from None
    if value < 0:
        raise ConfigError(f"{PREFIX}{name}={raw!r} must be 0 or more")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item for item in raw.replace(",", " ").split() if item)


def _sha256_pins(name: str, raw: str) -> Mapping[str, str]:
    pins: dict[str, str] = {}
    for item in _list(raw):
        filename, sep, digest = item.partition("=")
        digest = digest.lower()
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(
                f"{PREFIX}{name}: {item!r} is not FILENAME=SHA256 (64 hex digits); "
                "separate several pins with commas"
            )
        pins[filename] = digest
    return pins


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
    concurrency: int = 0  # jobs one worker takes at once; 0: auto, as many as the engine batches
    max_batch: int = 0  # text chunks sampled in one batch at most; 0: auto, measured on the GPU at start
    batch_window_ms: float = 5.0  # how long a lone chunk waits for others to batch with
    streaming: bool = False  # the RunPod handler yields audio chunk by chunk
    max_text_chars: int = 5_000
    max_ref_bytes: int = 10 * 1024**2
    max_ref_seconds: float = 60.0
    max_output_seconds: float = 300.0
    ref_download_timeout_s: float = 15.0
    ref_allow_http: bool = False
    log_format: str = "json"
    # The HTTP API (`serve`)
    api_key: str | None = field(default=None, repr=False)  # F5_WORKER_API_KEY: Bearer token for every route but /ping, /health
    max_wait_s: float = 30.0  # a synthesis that could not start within this long is refused (429, Retry-After)

    def __post_init__(self) -> None:
        if self.flash_attn not in FLASH_ATTN_MODES:
            raise ConfigError(
                f"{PREFIX}FLASH_ATTN={self.flash_attn!r} is not one of {', '.join(FLASH_ATTN_MODES)}"
            )
        if self.concurrency < 0 or self.max_batch < 0:
            raise ConfigError(f"{PREFIX}CONCURRENCY and {PREFIX}MAX_BATCH must be 0 (auto) or more")
        if not 0 <= self.batch_window_ms <= 1000:
            raise ConfigError(f"{PREFIX}BATCH_WINDOW_MS={self.batch_window_ms:g} must be between 0 and 1000")
        if self.max_wait_s <= 0:
            raise ConfigError(f"{PREFIX}MAX_WAIT_S={self.max_wait_s:g} must be more than 0 seconds")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"{PREFIX}LOG_FORMAT={self.log_format!r} is not json or text")

    @property
    def root(self) -> Path:
        """The one directory on the volume that holds all of the worker's files."""
        return self.volume / "f5-worker"

    @property
    def voices(self) -> Path:
        """Stored reference voices: <name>.wav (or .flac/.mp3/.ogg) with <name>.txt holding its words."""
        return self.voices_dir or self.root / "voices"

    @property
    def hub_cache(self) -> Path:
        """The Hugging Face hub cache the worker uses and fills (``HF_HUB_CACHE``)."""
        return self.hf_cache or self.volume / "huggingface-cache" / "hub"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        raw = {k[len(PREFIX):]: v for k, v in env.items() if k.startswith(PREFIX)}
        values: dict = {}
        if "VOLUME" in raw and raw["VOLUME"].strip():
            values["volume"] = Path(raw["VOLUME"]).expanduser()
        if "FLASH_ATTN" in raw:
            values["flash_attn"] = raw["FLASH_ATTN"].strip().lower()
        if "FLASH_ATTN_VERSION" in raw:
            values["flash_attn_version"] = raw["FLASH_ATTN_VERSION"].strip() or "auto"
        if "FLASH_ATTN_MIRRORS" in raw:
            values["flash_attn_mirrors"] = _list(raw["FLASH_ATTN_MIRRORS"])
        if "FLASH_ATTN_SHA256" in raw:
            values["flash_attn_sha256"] = _sha256_pins("FLASH_ATTN_SHA256", raw["FLASH_ATTN_SHA256"])
        if "FLASH_ATTN_UPSTREAM" in raw:
            values["flash_attn_upstream"] = raw["FLASH_ATTN_UPSTREAM"].strip()
        if "ALLOW_HTTP" in raw:
            values["allow_http"] = _bool("ALLOW_HTTP", raw["ALLOW_HTTP"])
        if "DOWNLOAD_TIMEOUT" in raw:
            values["download_timeout_s"] = _float("DOWNLOAD_TIMEOUT", raw["DOWNLOAD_TIMEOUT"])
        if "DOWNLOAD_DEADLINE" in raw:
            values["download_deadline_s"] = _float("DOWNLOAD_DEADLINE", raw["DOWNLOAD_DEADLINE"])
        if "SHUTDOWN_TIMEOUT" in raw:
            values["shutdown_timeout_s"] = _float("SHUTDOWN_TIMEOUT", raw["SHUTDOWN_TIMEOUT"])
        if "DOWNLOAD_RETRIES" in raw:
            values["download_retries"] = _int("DOWNLOAD_RETRIES", raw["DOWNLOAD_RETRIES"])
        if "VERIFY_TIMEOUT" in raw:
            values["verify_timeout_s"] = _float("VERIFY_TIMEOUT", raw["VERIFY_TIMEOUT"])
        if "MODEL" in raw:
            values["model"] = raw["MODEL"].strip()
        if raw.get("CKPT", "").strip():
            values["ckpt"] = raw["CKPT"].strip()
        if raw.get("VOCAB", "").strip():
            values["vocab"] = raw["VOCAB"].strip()
        if raw.get("HF_CACHE", "").strip():
            values["hf_cache"] = Path(raw["HF_CACHE"]).expanduser()
        if "LEGACY_MODEL_DIRS" in raw:
            values["legacy_model_dirs"] = tuple(Path(p) for p in _list(raw["LEGACY_MODEL_DIRS"]))
        if "OFFLINE" in raw:
            values["offline"] = _bool("OFFLINE", raw["OFFLINE"])
        elif env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            values["offline"] = True  # the standard switch means the same to us
        if raw.get("VOICES_DIR", "").strip():
            values["voices_dir"] = Path(raw["VOICES_DIR"]).expanduser()
        for name in ("CONCURRENCY", "MAX_BATCH"):
            if name in raw:
                values[name.lower()] = 0 if raw[name].strip().lower() == "auto" else _int(name, raw[name])
        for name, parse in (("BATCH_WINDOW_MS", _float), ("MAX_TEXT_CHARS", _int), ("MAX_REF_BYTES", _int),
                            ("MAX_REF_SECONDS", _float), ("MAX_OUTPUT_SECONDS", _float),
                            ("REF_DOWNLOAD_TIMEOUT", _float)):
            if name in raw:
                field_name = "ref_download_timeout_s" if name == "REF_DOWNLOAD_TIMEOUT" else name.lower()
                values[field_name] = parse(name, raw[name])
        for name in ("STREAMING", "REF_ALLOW_HTTP"):
            if name in raw:
                values[name.lower()] = _bool(name, raw[name])
        if "LOG_FORMAT" in raw:
            values["log_format"] = raw["LOG_FORMAT"].strip().lower()
        if raw.get("API_KEY", "").strip():
            values["api_key"] = raw["API_KEY"].strip()
        if "MAX_WAIT_S" in raw:
            values["max_wait_s"] = _float("MAX_WAIT_S", raw["MAX_WAIT_S"])
        values.update(overrides)
        values.setdefault("volume", default_volume())
        return cls(**values)

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)
