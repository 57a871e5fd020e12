"""Point huggingface_hub at our cache: environment variables, set before it is imported.

huggingface_hub reads ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and its timeouts into
``huggingface_hub.constants`` when it is first imported. So this module never imports
it; the bootstrap calls ``apply`` before anything does, and the code that downloads
imports it afterwards. Every library the worker loads later (F5-TTS, its cached_path,
vocos) then reads and writes the same cache, and stays off the network once
``HF_HUB_OFFLINE=1`` is set. If huggingface_hub was imported too early anyway, its
constants are patched too and a warning says so.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["hub_env", "apply"]

# constants attribute <- (env var, parser)
_CONSTANTS = {
    "HF_HUB_CACHE": ("HF_HUB_CACHE", str),
    "HF_HUB_OFFLINE": ("HF_HUB_OFFLINE", lambda v: v == "1"),
    "HF_HUB_ETAG_TIMEOUT": ("HF_HUB_ETAG_TIMEOUT", int),
    "HF_HUB_DOWNLOAD_TIMEOUT": ("HF_HUB_DOWNLOAD_TIMEOUT", int),
}


def hub_env(cache_dir: Path | None = None, *, etag_timeout_s: float | None = None,
            download_timeout_s: float | None = None, offline: bool | None = None) -> dict[str, str]:
    """The variables to set; huggingface_hub parses the timeouts as whole seconds."""
    env: dict[str, str] = {}
    if cache_dir is not None:
        env["HF_HUB_CACHE"] = str(cache_dir)
    if etag_timeout_s is not None:
        env["HF_HUB_ETAG_TIMEOUT"] = str(max(1, round(etag_timeout_s)))
    if download_timeout_s is not None:
        env["HF_HUB_DOWNLOAD_TIMEOUT"] = str(max(1, round(download_timeout_s)))
    if offline is not None:
        env["HF_HUB_OFFLINE"] = "1" if offline else "0"
    if cache_dir is not None:
        env["HF_HUB_DISABLE_TELEMETRY"] = "1"
        env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # one log line a second per file otherwise
    return env


def apply(env: dict[str, str], environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``env``; returns a warning when huggingface_hub had already read the old values."""
    environ = os.environ if environ is None else environ
    environ.update(env)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None or environ is not os.environ:
        return None
    for attr, (var, parse) in _CONSTANTS.items():
        if var in env:
            setattr(constants, attr, parse(env[var]))
    early = [v for v in env if v in ("HF_HUB_CACHE", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT")]
    if early:
        return (f"huggingface_hub was imported before {', '.join(early)} were set; its constants were patched, "
                "but default arguments it bound at import (etag_timeout) keep the old values")
    return None
