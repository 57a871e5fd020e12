"""A best-effort lease on a shared volume, to save duplicate work, never to guard correctness.

``flock`` can silently succeed for everyone on NFS-like network volumes, and a
worker can die holding anything. So a lease here is a file created with
``O_EXCL`` whose mtime the holder refreshes (``heartbeat``); one not refreshed for
``stale_after_s`` is taken over. Two workers may still both do the work (a lease
taken over from a slow, not dead, holder; a volume without atomic O_EXCL): that
only costs time, because results are published by atomic rename.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

__all__ = ["Lease", "STALE_AFTER_S"]

STALE_AFTER_S = 60.0


class Lease:
    def __init__(self, path: Path, stale_after_s: float = STALE_AFTER_S):
        self.path = path
        self.stale_after_s = stale_after_s
        self.token = uuid.uuid4().hex
        self.held = False

    def _age(self) -> float | None:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def try_acquire(self) -> bool:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                age = self._age()
                if age is not None and age > self.stale_after_s:
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # its holder stopped refreshing it: take over
                    continue
                return False
            with os.fdopen(fd, "w") as f:
                f.write(self.token)
            self.held = True
            return True
        return False

    def busy(self) -> bool:
        """Someone else holds a fresh lease."""
        age = self._age()
        return age is not None and age <= self.stale_after_s

    def heartbeat(self) -> None:
        if self.held:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError):
            if self.path.read_text() == self.token:
                self.path.unlink()
