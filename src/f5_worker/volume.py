"""Where the worker keeps its files: the network volume when it can write there, else local disk."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from .settings import LOCAL_VOLUME

__all__ = ["VolumeChoice", "choose_volume"]


@dataclass(frozen=True)
class VolumeChoice:
    path: Path
    requested: Path
    warning: str | None = None


def _writable(path: Path) -> str | None:
    """Why ``path`` cannot hold our files, or None. Tries a real write: mount flags and ACLs lie."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


def choose_volume(requested: Path, fallback: Path = LOCAL_VOLUME) -> VolumeChoice:
    """The requested volume if it is writable; otherwise local disk, with the reason as a warning."""
    why = _writable(requested / "f5-worker")
    if why is None:
        return VolumeChoice(requested, requested)
    local = fallback.expanduser()
    if local != requested and _writable(local / "f5-worker") is None:
        return VolumeChoice(local, requested, f"volume {requested} is not writable ({why}); using {local} instead")
    return VolumeChoice(requested, requested, f"volume {requested} is not writable ({why}), nor is {local}")
