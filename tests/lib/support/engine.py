"""One tiny-random engine per test process: building it costs a second, using it is cheap."""

from __future__ import annotations

import functools
import io
import wave

import numpy as np

SAMPLE_RATE = 24_000


@functools.lru_cache(maxsize=None)
def tiny_engine():
    from f5_worker.engine.engine import Engine, EngineConfig

    return Engine(EngineConfig(model="tiny-random", device="cpu"))


def tone(seconds: float = 2.0, hz: float = 220.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return buffer.getvalue()


def store_voice(volume, name: str = "alice", text: str = "Alice says hello.", seconds: float = 2.0, hz: float = 330.0):
    """A voice stored on ``volume`` the simple way an operator can: ``<voices>/<name>.wav`` and ``<name>.txt``."""
    voices = volume / "f5-worker" / "voices"
    voices.mkdir(parents=True, exist_ok=True)
    (voices / f"{name}.wav").write_bytes(wav_bytes(tone(seconds, hz)))
    (voices / f"{name}.txt").write_text(text)
    return voices
