"""rjieba's word segmentation of text without CJK characters, without rjieba.

F5-TTS's ``convert_char_to_pinyin`` segments every text with rjieba (jieba-rs 0.11), English too, and
the segments matter: a segment of several ASCII characters gets a space before it unless one is
already there (``Hello,world`` becomes ``Hello, world``; ``e-mail`` stays one segment). For text
without CJK characters jieba-rs's segmentation reduces to a few rules, restated here so an English
request never loads rjieba's dictionary:

1. Blocks: runs of ``[A-Za-z0-9+#&._%-]`` (jieba-rs's ``is_han_default`` without CJK) are cut as
   words; every other character is a segment of its own (``\\r\\n`` together).
2. In a block, jieba's dictionary words win where they start (its only entries made of these
   characters are ``AT&T``, ``c#``, ``C#``, ``c++`` and ``C++``); the characters between them go
   to the HMM step, which for non-CJK text is:
3. an alphanumeric run, then any number of ``.``/``_``/``-`` + alphanumeric run, then an optional
   ``%``, is one segment (``v1.2-beta_3``, ``50%``); each run of other characters between such
   segments is one segment (``++``, ``--``).

``tests/engine/test_text.py`` holds ``cut`` equal to ``rjieba.cut`` on generated text.
"""

from __future__ import annotations

import re

__all__ = ["cut", "DICTIONARY_WORDS"]

# jieba's dict.txt entries made only of block characters (jieba 0.42.1's dictionary, which jieba-rs embeds).
DICTIONARY_WORDS = ("AT&T", "c#", "C#", "c++", "C++")
_BLOCK = re.compile(r"[A-Za-z0-9+#&._%-]+")
_HMM_SEGMENT = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*%?|[^A-Za-z0-9]+")


def cut(text: str) -> list[str]:
    """``rjieba.cut(text)`` for text with no CJK character (the caller checks)."""
    words: list[str] = []
    position = 0
    for block in _BLOCK.finditer(text):
        words.extend(_single_characters(text[position:block.start()]))
        words.extend(_cut_block(block.group()))
        position = block.end()
    words.extend(_single_characters(text[position:]))
    return words


def _single_characters(gap: str) -> list[str]:
    return re.findall(r"\r\n|.", gap, flags=re.DOTALL)


def _cut_block(block: str) -> list[str]:
    words: list[str] = []
    start = x = 0
    while x < len(block):
        word = next((w for w in DICTIONARY_WORDS if block.startswith(w, x)), None)
        if word is None:
            x += 1
            continue
        words.extend(_hmm(block[start:x]))
        words.append(word)
        x = start = x + len(word)
    words.extend(_hmm(block[start:]))
    return words


def _hmm(run: str) -> list[str]:
    """The characters between dictionary words: one character as it is, more through the HMM's splitter."""
    if len(run) <= 1:
        return [run] if run else []
    return _HMM_SEGMENT.findall(run)
