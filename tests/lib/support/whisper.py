"""A tiny, randomly initialised Whisper, saved as transformers saves any model: the worker's ASR path
loads it exactly as it loads openai/whisper-large-v3-turbo, offline, from the hub cache.

Its tokenizer is a byte-level BPE over the 256 byte symbols and Whisper's special tokens; generation
never picks a special token (they are suppressed), so it always stops at ``max_new_tokens`` and its
transcript is gibberish of a known kind: bytes, many more characters than a second of speech holds.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

REPO = "f5-worker-tests/tiny-whisper"
SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>")


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table, which Whisper's tokenizer uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def save_tiny_whisper(directory: Path, seed: int = 0) -> Path:
    """Write config, weights, tokenizer and feature extractor into ``directory`` (as save_pretrained does)."""
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperTokenizer)

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {symbol: i for i, symbol in enumerate(_byte_symbols())}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                                 unk_token=SPECIALS[0], bos_token=SPECIALS[0], eos_token=SPECIALS[0], pad_token=SPECIALS[0])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIALS[1:])})
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    eos, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=448, pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
        decoder_start_token_id=start))
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos, max_length=448,
        no_timestamps_token_id=ids["<|notimestamps|>"], forced_decoder_ids=None,
        suppress_tokens=sorted(ids.values()), begin_suppress_tokens=[eos])
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(directory)  # preprocessor_config.json, as the hub has
    return directory


def publish(cache_dir: Path, directory: Path, repo_id: str = REPO) -> None:
    """Put every file of ``directory`` into the hub cache at ``cache_dir`` as ``repo_id``'s (blobs, snapshot, ref)."""
    from f5_worker.models.cache import publish as publish_file
    from f5_worker.models.catalog import HubFile

    for path in sorted(directory.iterdir()):
        publish_file(cache_dir, HubFile(repo_id, path.name, "asr"), path)


@functools.lru_cache(maxsize=None)
def tiny_whisper_files(root: str) -> Path:
    """One tiny Whisper per test session, saved under ``root``."""
    return save_tiny_whisper(Path(root) / "tiny-whisper")
