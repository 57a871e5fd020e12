"""A prepared voice is found again by its content, whatever it was called or wherever it came from."""

from __future__ import annotations

import pytest

from f5_worker.serving.voice_cache import VoiceCache, content_key


def counting(prepared: list):
    def prepare(data: bytes) -> str:
        prepared.append(data)
        return data.decode().upper()
    return prepare


def test_the_same_bytes_are_prepared_once():
    prepared: list = []
    cache = VoiceCache(max_entries=4)
    assert cache.get_or_prepare(b"narrator", counting(prepared)) == "NARRATOR"
    assert cache.get_or_prepare(b"narrator", counting(prepared)) == "NARRATOR"
    assert prepared == [b"narrator"] and (cache.hits, cache.misses) == (1, 1)
    assert b"narrator" in cache


def test_keys_are_sha256_of_the_content():
    assert content_key(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_the_least_recently_used_voice_is_dropped_first():
    prepared: list = []
    cache = VoiceCache(max_entries=2)
    for data in (b"a", b"b", b"a", b"c"):  # "a" was used after "b", so "b" goes
        cache.get_or_prepare(data, counting(prepared))
    assert len(cache) == 2 and b"a" in cache and b"c" in cache and b"b" not in cache


def test_a_failed_preparation_is_not_cached():
    cache = VoiceCache()

    def broken(data):
        raise ValueError("not audio")

    with pytest.raises(ValueError):
        cache.get_or_prepare(b"junk", broken)
    assert b"junk" not in cache and len(cache) == 0


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="max_entries must be at least 1, got 0"):
        VoiceCache(0)
