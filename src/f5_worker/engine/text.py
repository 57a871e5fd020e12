"""F5-TTS's text rules, without F5-TTS: chunking, pinyin conversion, token ids.

Each function restates its namesake in F5-TTS (``f5_tts/model/utils.py``, ``infer/utils_infer.py``),
quirks included, so a text gets the tokens and chunks it gets from F5-TTS; ``tests/engine/test_text.py``
compares them on generated English, Chinese, mixed and punctuated text. The difference: rjieba and
pypinyin load only for text that needs them (CJK and other characters past U+07FF, except the
General Punctuation block); other text is segmented by ``segment.cut``, rjieba's rules restated.

``VOCAB`` is F5-TTS's ``infer/examples/vocab.txt`` (MIT licence: ``data/F5-TTS-LICENSE``), the vocabulary
of its published models, used when a model comes without one (``tiny-random``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from . import segment

__all__ = ["VOCAB", "load_vocab", "chunk_text", "convert_char_to_pinyin", "list_str_to_idx", "list_str_to_tensor"]

VOCAB = Path(__file__).parent / "data" / "vocab.txt"
# Replaced before anything else, "to address oov" (F5-TTS).
_CUSTOM_TRANS = str.maketrans({";": ",", "“": '"', "”": '"', "‘": "'", "’": "'"})


def load_vocab(path: Path | str = VOCAB) -> dict[str, int]:
    """A vocab.txt (one token a line) as ``{token: id}``: F5-TTS's ``get_tokenizer(path, "custom")[0]``.

    The vocabulary size is ``len()`` of the result (a repeated token keeps its last line's id).
    """
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as lines:
        for i, line in enumerate(lines):
            vocab[line[:-1]] = i
    return vocab


def chunk_text(text: str, max_chars: int = 135) -> list[str]:
    """Sentences gathered into chunks of at most ``max_chars`` UTF-8 bytes (a longer sentence is a chunk of its own)."""
    chunks = []
    current = ""
    for sentence in re.split(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])", text):
        if not sentence:
            continue
        spaced = sentence + " " if len(sentence[-1].encode("utf-8")) == 1 else sentence
        if len(current.encode("utf-8")) + len(sentence.encode("utf-8")) <= max_chars:
            current += spaced
        else:
            if current:
                chunks.append(current.strip())
            current = spaced
    if current:
        chunks.append(current.strip())
    return chunks


def convert_char_to_pinyin(text_list: list[str], polyphone: bool = True) -> list[list[str]]:
    """Each text as the token strings F5-TTS's vocabulary holds: characters, and Chinese as tone-numbered pinyin."""
    converted = []
    for text in text_list:
        text = text.translate(_CUSTOM_TRANS)
        if all(_plain(c) for c in text):
            converted.append(_convert(text, polyphone, segment.cut, _no_pinyin))
        else:
            import rjieba
            from pypinyin import Style, lazy_pinyin

            def pinyin(seg: str) -> list[str]:
                return lazy_pinyin(seg, style=Style.TONE3, tone_sandhi=True)

            converted.append(_convert(text, polyphone, rjieba.cut, pinyin))
    return converted


def _plain(c: str) -> bool:
    """Characters whose tokens need neither rjieba's dictionary nor pypinyin: up to 2 UTF-8 bytes, and punctuation."""
    return ord(c) < 0x800 or 0x2000 <= ord(c) <= 0x206F


def _no_pinyin(seg: str) -> list[str]:
    # segment.cut makes every non-ASCII character a segment of its own, and pypinyin gives a character
    # that is no hanzi back unchanged (tests/engine/test_text.py checks the General Punctuation block).
    return list(seg)


def _is_chinese(c: str) -> bool:
    return "\u3100" <= c <= "\u9fff"


def _convert(text: str, polyphone: bool, cut: Callable[[str], list[str]], pinyin: Callable[[str], list[str]]) -> list[str]:
    chars: list[str] = []
    for seg in cut(text):
        seg_bytes = len(seg.encode("utf-8"))
        if seg_bytes == len(seg):  # ASCII only: a word gets a space before it, unless one is there already
            if chars and seg_bytes > 1 and chars[-1] not in " :'\"":
                chars.append(" ")
            chars.extend(seg)
        elif polyphone and seg_bytes == 3 * len(seg):  # three-byte characters only: a Chinese word, in context
            syllables = pinyin(seg)
            for i, c in enumerate(seg):
                if _is_chinese(c):
                    chars.append(" ")
                chars.append(syllables[i])
        else:  # mixed: character by character
            for c in seg:
                if ord(c) < 256:
                    chars.extend(c)
                elif _is_chinese(c):
                    chars.append(" ")
                    chars.extend(pinyin(c))
                else:
                    chars.append(c)
    return chars


def list_str_to_idx(text: list[str] | list[list[str]], vocab_char_map: dict[str, int],
                    padding_value: int = -1) -> torch.Tensor:
    """Token ids (batch, tokens), -1 padded; a token not in the vocabulary is 0 (the space)."""
    ids = [torch.tensor([vocab_char_map.get(c, 0) for c in t]) for t in text]
    return pad_sequence(ids, padding_value=padding_value, batch_first=True)


def list_str_to_tensor(text: list[str], padding_value: int = -1) -> torch.Tensor:
    """UTF-8 bytes as ids (F5-TTS's tokenizer for models without a vocabulary)."""
    ids = [torch.tensor([*bytes(t, "UTF-8")]) for t in text]
    return pad_sequence(ids, padding_value=padding_value, batch_first=True)
