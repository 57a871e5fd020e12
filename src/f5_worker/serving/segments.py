"""Multi-voice text: ``[name]`` tags switch voices within one text, as F5-TTS's ``infer_cli`` does.

    "Hello there. [bob] Hi! [main] Nice to meet you."
        -> [(None, "Hello there."), ("bob", "Hi!"), (None, "Nice to meet you.")]

Text before the first tag, and after a ``[main]`` tag, is spoken with the request's own voice
(``ref_audio``, or ``voice`` on the OpenAI route), as in F5-TTS. A tag is a voice name in square
brackets (the characters a voice name may hold: letters, digits, '.', '_' and '-'); F5-TTS
matches ``\\[(\\w+)\\]``. Unlike F5-TTS, which falls back to the main voice without a word, a tag
naming no voice is an error that says which.
"""

from __future__ import annotations

import re

__all__ = ["split_voices", "TAG", "MAIN"]

TAG = re.compile(r"\[([A-Za-z0-9][A-Za-z0-9._-]{0,63})\]")
MAIN = "main"


def split_voices(text: str) -> list[tuple[str | None, str]]:
    """``(voice, words)`` in order; ``voice`` None is the request's own. Empty pieces are dropped."""
    parts: list[tuple[str | None, str]] = []
    voice: str | None = None
    start = 0
    for match in TAG.finditer(text):
        words = text[start:match.start()].strip()
        if words:
            parts.append((voice, words))
        voice = None if match.group(1) == MAIN else match.group(1)
        start = match.end()
    words = text[start:].strip()
    if words:
        parts.append((voice, words))
    return parts
