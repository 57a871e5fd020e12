"""F5-TTS's reference clipping, reproduced on arrays: same cut points as upstream's pydub code."""

from __future__ import annotations

import numpy as np
import pytest

from f5_worker.serving.refclip import clip_reference, remove_long_silences, remove_silence_edges

SR = 24_000


def sine(seconds: float, hz: float = 200.0, level: float = 0.2) -> np.ndarray:
    return (level * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def speech_like(rng: np.random.Generator, phrases: int) -> np.ndarray:
    """Phrases of a tone between pauses of varying length and noise floor, quantized to 16 bits as a wav is."""
    parts = []
    for _ in range(phrases):
        parts.append(sine(rng.uniform(0.3, 2.5), rng.uniform(100, 300), rng.uniform(0.06, 0.3)))
        parts.append(rng.normal(0, rng.choice([0.0, 0.0005, 0.002]), int(rng.uniform(0.05, 1.6) * SR)))
    x = np.clip(np.concatenate(parts), -1, 1)
    return (np.round(x * 32767) / 32767).astype(np.float32)


def test_a_short_clean_reference_loses_only_its_silent_edges_and_gains_50_ms():
    got = clip_reference(np.concatenate([silence(0.5), sine(4.0), silence(0.5)]), SR)
    assert len(got) / SR == pytest.approx(4.05, abs=0.011)
    assert not got[-int(0.05 * SR):].any()


def test_a_long_reference_is_cut_at_a_pause_between_6_and_12_seconds():
    phrases = np.concatenate([np.concatenate([sine(1.5), silence(1.2)])] * 10)
    got = clip_reference(phrases, SR)
    assert 6.0 < len(got) / SR <= 12.05


def test_a_reference_without_pauses_is_cut_at_12_seconds():
    assert len(clip_reference(sine(30.0), SR)) / SR == pytest.approx(12.05, abs=0.001)


def test_pauses_longer_than_two_seconds_are_shortened_as_upstream_does():
    got = clip_reference(np.concatenate([sine(2.0), silence(5.0), sine(2.0)]), SR)
    assert len(got) / SR == pytest.approx(2.0 + 2.0 + 2.0 + 0.05, abs=0.02)


def test_silence_throughout_leaves_nothing():
    assert clip_reference(silence(3.0), SR).size == 0
    assert remove_silence_edges(silence(1.0), SR).size == 0


@pytest.mark.parametrize("seed", range(8))
def test_same_cut_as_f5_tts_on_pydub(seed):
    """The oracle is F5-TTS's clip_short steps written against pydub, which F5-TTS depends on."""
    pydub = pytest.importorskip("pydub")
    from pydub import silence as pds

    x = speech_like(np.random.default_rng(seed), int(np.random.default_rng(seed).integers(2, 20)))
    segment = pydub.AudioSegment(np.round(x * 32767).astype("<i2").tobytes(), frame_rate=SR, sample_width=2,
                                 channels=1)

    def keep(pieces):
        wave = pydub.AudioSegment.silent(duration=0, frame_rate=SR)
        for piece in pieces:
            if len(wave) > 6000 and len(wave + piece) > 12000:
                break
            wave += piece
        return wave

    wave = keep(pds.split_on_silence(segment, min_silence_len=1000, silence_thresh=-50, keep_silence=1000,
                                     seek_step=10))
    if len(wave) > 12000:
        wave = keep(pds.split_on_silence(segment, min_silence_len=100, silence_thresh=-40, keep_silence=1000,
                                         seek_step=10))
    if len(wave) > 12000:
        wave = wave[:12000]
    wave = wave[pds.detect_leading_silence(wave, silence_threshold=-42):]
    end = wave.duration_seconds
    for ms in reversed(wave):
        if ms.dBFS > -42:
            break
        end -= 0.001
    wave = wave[: int(end * 1000)] + pydub.AudioSegment.silent(duration=50, frame_rate=SR)
    expected = np.array(wave.get_array_of_samples(), dtype=np.float32) / 32767

    got = clip_reference(x, SR)
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-4)


class TestRemoveLongSilences:
    """``remove_silence``: F5-TTS's remove_silence_for_generated_wav, now the one silence algorithm (no pydub)."""

    def test_a_long_pause_keeps_half_a_second_a_side(self):
        got = remove_long_silences(np.concatenate([sine(1.0), silence(4.0), sine(1.0)]), SR)
        assert len(got) / SR == pytest.approx(1.0 + 0.5 + 0.5 + 1.0, abs=0.02)

    def test_short_pauses_and_silence_throughout_are_left_alone(self):
        x = np.concatenate([sine(1.0), silence(0.8), sine(1.0)])
        assert len(remove_long_silences(x, SR)) == len(x)
        assert len(remove_long_silences(silence(3.0), SR)) == 3 * SR

    @pytest.mark.parametrize("seed", range(6))
    def test_same_as_f5_tts_on_pydub(self, seed):
        pydub = pytest.importorskip("pydub")  # the oracle, in the test extra only
        from pydub import silence as pds

        rng = np.random.default_rng(100 + seed)
        x = speech_like(rng, int(rng.integers(3, 20)))
        segment = pydub.AudioSegment(np.round(x * 32767).astype("<i2").tobytes(), frame_rate=SR, sample_width=2,
                                     channels=1)
        kept = pds.split_on_silence(segment, min_silence_len=1000, silence_thresh=-50, keep_silence=500,
                                    seek_step=10)
        expected = sum(kept, pydub.AudioSegment.silent(duration=0, frame_rate=SR))
        expected = np.array(expected.get_array_of_samples(), dtype=np.float32) / 32767
        got = remove_long_silences(x, SR)
        assert len(got) == len(expected)
        np.testing.assert_allclose(got, expected, atol=1e-4)
