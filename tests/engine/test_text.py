"""The worker's text rules against F5-TTS's own: same tokens, same chunks, on generated text."""

from __future__ import annotations

import subprocess
import sys

import pytest
import rjieba
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from f5_worker.engine import segment
from f5_worker.engine.text import VOCAB, chunk_text, convert_char_to_pinyin, list_str_to_idx, load_vocab
from support import f5_reference as f5

ENGLISH_WORDS = ["Hello", "world", "the", "e-mail", "U.S.A.", "3.14", "50%", "c++", "C#", "AT&T", "don't", "x-ray",
                 "v1.2-beta_3", "café", "naïve", "Straße", "São", "Ελλάδα", "Москва", "שלום"]
CHINESE_WORDS = ["你好", "世界", "中文", "我们", "银行", "行走", "一个", "不要", "长江大桥", "重庆", "乐", "了"]
PUNCTUATION = list(" ,.;:!?'\"()-—–…“”‘’、，。！？；：「」\n\t\r\n  ") + ["...", "--", "++", "\r\n"]
OTHER = ["アイウ", "한국어", "😀", "€", "ㄅ", "〇", "Ａ", "\u3100", "\u4dc0"]


def texts(*vocabularies: list[str]) -> st.SearchStrategy[str]:
    pieces = st.sampled_from([w for words in vocabularies for w in words])
    return st.lists(pieces, max_size=25).map("".join)


@settings(max_examples=300, deadline=None)
@given(texts(ENGLISH_WORDS, PUNCTUATION))
def test_english_text_gets_f5_tts_tokens(text):
    assert convert_char_to_pinyin([text]) == f5.model_utils.convert_char_to_pinyin([text])


@settings(max_examples=300, deadline=None)
@given(texts(ENGLISH_WORDS, CHINESE_WORDS, PUNCTUATION, OTHER), st.booleans())
def test_chinese_and_mixed_text_gets_f5_tts_tokens(text, polyphone):
    assert (convert_char_to_pinyin([text], polyphone=polyphone)
            == f5.model_utils.convert_char_to_pinyin([text], polyphone=polyphone))


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(max_codepoint=0x7FF, exclude_categories=["Cs"]), max_size=40)
       | st.text(st.sampled_from("abcXYZ019 +#&._%-,;:!?'\"/\r\n"), max_size=40))
def test_segments_are_rjiebas_for_text_without_cjk(text):
    assert segment.cut(text) == rjieba.cut(text)


@pytest.mark.parametrize("text", ["Hello,world", "c++ and C# at AT&T", "abc++ xAT&Tx", "e-mail v1.2-beta_3 50%%",
                                  "hi--there", "a\r\nb", "U.S.A. don't"])
def test_segments_of_dictionary_words_and_joiners(text):
    assert segment.cut(text) == rjieba.cut(text)


def test_general_punctuation_is_taken_as_it_is():
    """Why the block needs no pypinyin: F5-TTS gives each of its characters back unchanged, in any context."""
    for code in range(0x2000, 0x2070):
        c = chr(code)
        for text in (c, f"a{c}bc", f"ab{c}{c}cd", f"你{c}好"):
            assert convert_char_to_pinyin([text]) == f5.model_utils.convert_char_to_pinyin([text]), hex(code)


def test_several_texts_at_once():
    batch = ["Hello, world.", "你好，世界。", ""]
    assert convert_char_to_pinyin(batch) == f5.model_utils.convert_char_to_pinyin(batch)


@settings(max_examples=300, deadline=None)
@given(texts(ENGLISH_WORDS, CHINESE_WORDS, PUNCTUATION), st.integers(1, 200))
def test_chunks_are_f5_tts_chunks(text, max_chars):
    assert chunk_text(text, max_chars=max_chars) == f5.utils_infer.chunk_text(text, max_chars=max_chars)


def test_the_shipped_vocabulary_is_f5_tts_own():
    assert VOCAB.read_bytes() == f5.F5_VOCAB.read_bytes()
    vocab_char_map, vocab_size = f5.model_utils.get_tokenizer(str(VOCAB), "custom")
    assert load_vocab() == vocab_char_map and len(load_vocab()) == vocab_size == 2545


def test_a_vocabulary_file_with_repeats_reads_as_f5_tts_reads_it(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text(" \na\nb\na\nzh1\n", encoding="utf-8")
    assert load_vocab(path) == f5.model_utils.get_tokenizer(str(path), "custom")[0] == {" ": 0, "a": 3, "b": 2, "zh1": 4}


@settings(max_examples=100, deadline=None)
@given(st.lists(texts(ENGLISH_WORDS, CHINESE_WORDS, PUNCTUATION).filter(bool), min_size=1, max_size=4))
def test_token_ids_are_f5_tts_ids(batch):
    vocab = load_vocab()
    tokens = convert_char_to_pinyin(batch)
    assert torch.equal(list_str_to_idx(tokens, vocab), f5.model_utils.list_str_to_idx(tokens, vocab))


LAZY = """
import sys
from f5_worker.engine.text import convert_char_to_pinyin
convert_char_to_pinyin(["Hello, world... it's 3.14 — “quoted” — café, naïve; Straße."])
print("rjieba" in sys.modules or "pypinyin" in sys.modules)
convert_char_to_pinyin(["你好"])
print("rjieba" in sys.modules and "pypinyin" in sys.modules)
"""


def test_rjieba_and_pypinyin_load_only_for_text_that_needs_them():
    proc = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
