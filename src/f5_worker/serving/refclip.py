"""Clip a reference voice the way F5-TTS does, on a float array instead of a pydub AudioSegment.

F5-TTS's ``preprocess_ref_audio_text`` (``src/f5_tts/infer/utils_infer.py``, SWivid/F5-TTS)
keeps at most ~12 s of a reference, preferring to cut at a pause:

1. split on long silences (``min_silence_len=1000`` ms, ``silence_thresh=-50`` dBFS,
   ``keep_silence=1000`` ms, ``seek_step=10`` ms) and keep whole pieces while the total
   is at most 6 s, or adding the next piece keeps it at most 12 s;
2. if that is still over 12 s, do the same splitting on short silences
   (``min_silence_len=100``, ``silence_thresh=-40``);
3. if still over 12 s, cut at 12 s;
4. trim silence from both edges (``remove_silence_edges``, -42 dBFS: leading in 10 ms
   steps, trailing in 1 ms steps) and append 50 ms of silence.

Splitting also shortens any pause longer than 2 s inside a short reference (each piece
keeps at most 1 s of silence on either side), exactly as F5-TTS does. The functions below
follow pydub's ``silence.detect_silence`` / ``split_on_silence`` / ``detect_leading_silence``
on millisecond positions, with the RMS of a window of float samples in [-1, 1] standing
in for pydub's integer RMS, so the thresholds mean the same dBFS.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clip_reference", "split_on_silence", "remove_silence_edges", "remove_long_silences", "LongSilenceFilter",
           "CLIP_MS", "KEEP_AT_LEAST_MS", "TAIL_SILENCE_MS"]

CLIP_MS = 12_000
KEEP_AT_LEAST_MS = 6_000
TAIL_SILENCE_MS = 50
EDGE_THRESHOLD_DB = -42.0
# (min_silence_len ms, silence_thresh dBFS) for the two passes; keep_silence and seek_step as upstream.
PASSES = ((1000, -50.0), (100, -40.0))
KEEP_SILENCE_MS = 1000
SEEK_STEP_MS = 10
# F5-TTS's remove_silence_for_generated_wav, for outputs: silences over 1 s below -50 dBFS keep 500 ms a side.
OUTPUT_SILENCE = (1000, -50.0, 500)


def _index(ms: int | np.ndarray, sr: int):
    return ms * sr // 1000


def _length_ms(samples: np.ndarray, sr: int) -> int:
    return round(len(samples) * 1000 / sr)


def _window_rms(energy: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """RMS of samples[start:end] for each pair, from ``energy`` = cumulative sum of squares with a 0 first."""
    width = np.maximum(ends - starts, 1)
    return np.sqrt(np.maximum(energy[ends] - energy[starts], 0.0) / width)


def _energy(samples: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.square(samples, dtype=np.float64))))


def _detect_silence(samples: np.ndarray, sr: int, min_len: int, thresh_db: float, step: int) -> list[list[int]]:
    length = _length_ms(samples, sr)
    if length < min_len:
        return []
    last = length - min_len
    starts = list(range(0, last + 1, step))
    if last % step:
        starts.append(last)
    ms = np.asarray(starts, dtype=np.int64)
    energy = _energy(samples)
    end_index = np.minimum(_index(ms + min_len, sr), len(samples))
    rms = _window_rms(energy, _index(ms, sr), end_index)
    silent = [int(s) for s in ms[rms <= 10 ** (thresh_db / 20)]]
    if not silent:
        return []
    ranges, begin, prev = [], silent[0], silent[0]
    for start in silent[1:]:
        if start != prev + step and start > prev + min_len:
            ranges.append([begin, prev + min_len])
            begin = start
        prev = start
    ranges.append([begin, prev + min_len])
    return ranges


def _detect_nonsilent(samples: np.ndarray, sr: int, min_len: int, thresh_db: float, step: int) -> list[list[int]]:
    silent = _detect_silence(samples, sr, min_len, thresh_db, step)
    length = _length_ms(samples, sr)
    if not silent:
        return [[0, length]]
    if silent[0] == [0, length]:
        return []
    ranges, prev_end = [], 0
    for start, end in silent:
        ranges.append([prev_end, start])
        prev_end = end
    if prev_end != length:
        ranges.append([prev_end, length])
    if ranges[0] == [0, 0]:
        ranges.pop(0)
    return ranges


def split_on_silence(samples: np.ndarray, sr: int, min_len: int, thresh_db: float,
                     keep: int = KEEP_SILENCE_MS, step: int = SEEK_STEP_MS) -> list[np.ndarray]:
    """The pieces pydub's ``split_on_silence`` returns, as arrays."""
    ranges = [[start - keep, end + keep] for start, end in _detect_nonsilent(samples, sr, min_len, thresh_db, step)]
    for first, second in zip(ranges, ranges[1:]):
        if second[0] < first[1]:  # overlapping padding: meet in the middle
            first[1] = second[0] = (first[1] + second[0]) // 2
    length = _length_ms(samples, sr)
    return [_slice(samples, sr, max(s, 0), min(e, length)) for s, e in ranges]


def _slice(samples: np.ndarray, sr: int, start_ms: int, end_ms: int) -> np.ndarray:
    """pydub's ``segment[start_ms:end_ms]``: a slice reaching past the last sample (the length in ms is rounded)
    is padded with silence to the frames asked for."""
    start, end = _index(start_ms, sr), _index(end_ms, sr)
    piece = samples[start:end]
    missing = (end - start) - len(piece)
    return np.concatenate((piece, np.zeros(missing, dtype=piece.dtype))) if missing > 0 else piece


def _keep_pieces(pieces: list[np.ndarray], sr: int) -> np.ndarray:
    kept: list[np.ndarray] = []
    total = 0
    for piece in pieces:
        ms = _length_ms(piece, sr)
        if total > KEEP_AT_LEAST_MS and total + ms > CLIP_MS:
            break
        kept.append(piece)
        total += ms
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.float32)


def remove_silence_edges(samples: np.ndarray, sr: int, thresh_db: float = EDGE_THRESHOLD_DB) -> np.ndarray:
    threshold = 10 ** (thresh_db / 20)
    energy = _energy(samples)
    length = _length_ms(samples, sr)
    # Leading: 10 ms chunks while quieter than the threshold (an empty chunk counts as silent).
    lead_ms = np.arange(0, length, 10, dtype=np.int64)
    lead = _window_rms(energy, _index(lead_ms, sr), np.minimum(_index(lead_ms + 10, sr), len(samples)))
    loud = np.flatnonzero(lead >= threshold)
    start_ms = int(lead_ms[loud[0]]) if loud.size else length
    samples = samples[_index(start_ms, sr):]
    # Trailing: 1 ms slices from the end until one is louder than the threshold.
    energy = _energy(samples)
    length = _length_ms(samples, sr)
    ms = np.arange(length, dtype=np.int64)
    per_ms = _window_rms(energy, _index(ms, sr), np.minimum(_index(ms + 1, sr), len(samples)))
    loud = np.flatnonzero(per_ms > threshold)
    quiet_tail = length - (int(loud[-1]) + 1 if loud.size else 0)
    # Upstream subtracts 0.001 s per quiet millisecond from a float and truncates; the drift
    # sometimes drops one more millisecond. Reproduced so both cut at the same sample.
    end_s = len(samples) / sr
    for _ in range(quiet_tail):
        end_s -= 0.001
    return samples[: _index(max(int(end_s * 1000), 0), sr)]


def clip_reference(samples: np.ndarray, sr: int) -> np.ndarray:
    """F5-TTS's reference clipping (module docstring), for mono float samples at ``sr``.

    Returns an empty array when the reference is silent throughout; the caller decides
    what to say about that.
    """
    wave = samples
    for min_len, thresh_db in PASSES:
        wave = _keep_pieces(split_on_silence(samples, sr, min_len, thresh_db), sr)
        if _length_ms(wave, sr) <= CLIP_MS:
            break
    if _length_ms(wave, sr) > CLIP_MS:
        wave = wave[: _index(CLIP_MS, sr)]
    wave = remove_silence_edges(wave, sr)
    if not wave.size:
        return wave.astype(np.float32)
    tail = np.zeros(_index(TAIL_SILENCE_MS, sr), dtype=np.float32)
    return np.concatenate((wave.astype(np.float32, copy=False), tail))


def remove_long_silences(samples: np.ndarray, sr: int) -> np.ndarray:
    """F5-TTS's ``remove_silence_for_generated_wav`` (``remove_silence``): the pieces between silences longer
    than 1 s (below -50 dBFS), each keeping up to 500 ms of silence on either side. Audio that is silent
    throughout is returned as it is."""
    min_len, thresh_db, keep = OUTPUT_SILENCE
    pieces = split_on_silence(np.asarray(samples, dtype=np.float32), sr, min_len, thresh_db, keep=keep)
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.asarray(samples, np.float32)


class LongSilenceFilter:
    """``remove_long_silences`` for audio that arrives in pieces (a streamed job with ``remove_silence``).

    Each piece is held back from the end of its last loud 10 ms window (louder than -50 dBFS);
    what came before is filtered and let go. A pause inside what is let go is shortened exactly
    as ``remove_long_silences`` shortens it; a pause that spans the hold-back point is filtered
    as the leading silence of the next block, which keeps 500 ms of it where the whole output
    would keep up to 1 s (500 ms a side). At the end, a trailing silence of 1 s or more keeps 500 ms.
    """

    def __init__(self, sr: int):
        self.sr = sr
        self._held = np.zeros(0, dtype=np.float32)
        self._window = max(_index(10, sr), 1)
        self._threshold = 10 ** (OUTPUT_SILENCE[1] / 20)

    def _last_loud_end(self, samples: np.ndarray) -> int:
        """The end of the last loud window, in samples (0 if none is loud)."""
        usable = len(samples) // self._window * self._window
        if not usable:
            return 0
        windows = samples[:usable].reshape(-1, self._window).astype(np.float64)
        loud = np.flatnonzero(np.sqrt(np.mean(np.square(windows), axis=1)) > self._threshold)
        return int(loud[-1] + 1) * self._window if loud.size else 0

    def feed(self, samples: np.ndarray) -> np.ndarray:
        block = np.concatenate((self._held, np.asarray(samples, dtype=np.float32)))
        cut = self._last_loud_end(block)
        self._held = block[cut:]
        return remove_long_silences(block[:cut], self.sr) if cut else block[:0]

    def finish(self) -> np.ndarray:
        rest, self._held = self._held, np.zeros(0, dtype=np.float32)
        if self._last_loud_end(rest):
            return remove_long_silences(rest, self.sr)
        keep = _index(OUTPUT_SILENCE[2], self.sr)
        return rest[:keep] if len(rest) >= _index(OUTPUT_SILENCE[0], self.sr) else rest
