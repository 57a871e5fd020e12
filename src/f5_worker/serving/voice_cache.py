"""Prepared reference voices, kept in memory and found again by the sha256 of their bytes.

Preparing a reference (decode, resample, clip) costs tens of milliseconds to seconds; a
caller who sends the same voice with every request pays it once. The cache is a bounded
LRU; entries are whatever ``prepare`` returns (read-only arrays from ``audio``). Two
threads preparing the same new voice at once may both do the work; the result is the same.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["VoiceCache", "content_key", "DEFAULT_MAX_VOICES"]

T = TypeVar("T")
DEFAULT_MAX_VOICES = 32  # a 12 s prepared reference is ~1.2 MB of float32: ~40 MB at most


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class VoiceCache(Generic[T]):
    def __init__(self, max_entries: int = DEFAULT_MAX_VOICES):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, data: bytes) -> bool:
        return content_key(data) in self._entries

    def get_or_prepare(self, data: bytes, prepare: Callable[[bytes], T]) -> T:
        """The prepared form of ``data``, from the cache or from ``prepare(data)`` (errors are not cached)."""
        key = content_key(data)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        value = prepare(data)
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value
