"""Encode audio as it is made: bytes to send after each piece, a valid stream once finished.

- ``pcm``: raw s16le, piece by piece.
- ``wav``: a header whose RIFF and data sizes say "unknown" (0xFFFFFFFF, as streaming servers
  and ffmpeg write them), then s16le; decoders read to the end of the stream.
- ``mp3`` and ``opus`` (Ogg): libsndfile's encoders, fed piece by piece; what they have
  written so far is sent (MPEG frames and Ogg pages stand alone, so a player starts at once).
  libsndfile opens an MP3 with an empty frame that it fills with the Xing/Info totals at the
  end; streamed, that frame would stay empty and make decoders stop early, so it is not sent.
- ``flac``: its header holds totals known only at the end; not streamable here.

Pieces are mono float32 at the model's 24 kHz; the output keeps that rate (OpenAI's speech
API answers 24 kHz), so no piece is resampled apart from its neighbours.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from .formats import MODEL_SAMPLE_RATE

__all__ = ["StreamEncoder", "STREAMABLE"]

STREAMABLE = ("pcm", "wav", "mp3", "opus")
_UNKNOWN = 0xFFFFFFFF
_SNDFILE = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}
# Layer III bitrates (kbit/s) by index, MPEG-1 and MPEG-2/2.5; sample rates by version bits and index.
_MP3_KBPS = {True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(header: bytes) -> int | None:
    """The length in bytes of the Layer III frame starting with ``header`` (4 bytes), None if it is not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, bitrate_index, rate_index = (header[1] >> 3) & 3, header[2] >> 4, (header[2] >> 2) & 3
    if version == 1 or rate_index == 3 or not 0 < bitrate_index < 15:
        return None
    mpeg1 = version == 3
    return ((144 if mpeg1 else 72) * _MP3_KBPS[mpeg1][bitrate_index] * 1000 // _MP3_RATES[version][rate_index]
            + ((header[2] >> 1) & 1))


def _wav_header(rate: int) -> bytes:
    return (b"RIFF" + struct.pack("<I", _UNKNOWN) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", _UNKNOWN))


def _pcm16(samples: np.ndarray) -> bytes:
    clipped = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32)), -1.0, 1.0)
    return np.round(clipped * 32767).astype("<i2").tobytes()


class StreamEncoder:
    def __init__(self, fmt: str, rate: int = MODEL_SAMPLE_RATE):
        if fmt not in STREAMABLE:
            raise ValueError(f"{fmt} cannot be streamed; use one of {', '.join(STREAMABLE)}")
        self.fmt, self.rate = fmt, rate
        self._started = False
        self._buffer: io.BytesIO | None = None
        self._file: sf.SoundFile | None = None
        self._sent = 0
        if fmt in _SNDFILE:
            major, subtype = _SNDFILE[fmt]
            self._buffer = io.BytesIO()
            self._file = sf.SoundFile(self._buffer, mode="w", samplerate=rate, channels=1, format=major,
                                      subtype=subtype)

    def feed(self, samples: np.ndarray) -> bytes:
        """The bytes to send for ``samples`` (may be empty: an encoder waiting for a whole frame)."""
        if self._file is None:
            head = b"" if self._started or self.fmt == "pcm" else _wav_header(self.rate)
            self._started = True
            return head + _pcm16(samples)
        self._file.write(np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32)), -1.0, 1.0))
        self._file.flush()
        return self._take()

    def finish(self) -> bytes:
        """The last bytes: what the encoder still held, and its end of stream."""
        if self._file is None:
            return b"" if self._started or self.fmt == "pcm" else _wav_header(self.rate)
        self._file.close()
        return self._take()

    def _take(self) -> bytes:
        data = self._buffer.getbuffer()[self._sent:].tobytes()
        if self.fmt == "mp3" and self._sent == 0:
            length = _mp3_frame_length(data[:4])
            if length is None or len(data) < length:
                return b""  # not a whole first frame yet
            if not any(data[4:length]):  # the empty frame kept for the Xing/Info totals
                self._sent, data = length, data[length:]
        self._sent += len(data)
        return data
