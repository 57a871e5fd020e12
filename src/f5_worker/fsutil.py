"""Files on a shared volume: written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path

__all__ = ["write_bytes_atomic", "write_json_atomic", "writable", "sweep_incomplete", "STALE_AFTER_S"]

# A temp file untouched this long belongs to a writer that died: a live download or copy writes continuously.
STALE_AFTER_S = 3600.0


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a unique temp file beside ``path``, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.incomplete"
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: object) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def writable(path: Path) -> str | None:
    """Why ``path`` cannot hold new files, or None. Tries a real write: mount flags and ACLs lie."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


def sweep_incomplete(directory: Path, pattern: str, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove ``*.incomplete`` files matching ``pattern`` under ``directory`` that nobody wrote for ``max_age_s``.

    They are what a writer killed mid-way leaves; nothing reads them, but on a shared volume under
    repeated kills they would fill it. Fresh ones may belong to a live writer and stay.
    """
    removed, now = [], time.time()
    for path in directory.glob(pattern) if directory.is_dir() else ():
        with contextlib.suppress(OSError):
            if path.name.endswith(".incomplete") and now - path.stat().st_mtime > max_age_s:
                path.unlink()
                removed.append(path)
    return removed
