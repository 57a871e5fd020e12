"""Where the worker keeps its files: the network volume when it can write there, else local disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .fsutil import writable
from .settings import LOCAL_VOLUME

__all__ = ["VolumeChoice", "choose_volume"]


@dataclass(frozen=True)
class VolumeChoice:
    path: Path
    requested: Path
    warning: str | None = None


def choose_volume(requested: Path, fallback: Path = LOCAL_VOLUME) -> VolumeChoice:
    """The requested volume if it is writable; otherwise local disk, with the reason as a warning."""
    why = writable(requested / "f5-worker")
    if why is None:
        return VolumeChoice(requested, requested)
    local = fallback.expanduser()
    if local != requested and writable(local / "f5-worker") is None:
        return VolumeChoice(local, requested, f"volume {requested} is not writable ({why}); using {local} instead")
    return VolumeChoice(requested, requested, f"volume {requested} is not writable ({why}), nor is {local}")
