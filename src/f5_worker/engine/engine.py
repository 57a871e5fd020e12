"""Text and a prepared reference voice in, 24 kHz speech out, chunk by chunk.

The heavy lifting is F5-TTS's own: ``chunk_text`` splits long text by its rules,
``infer_batch_process`` turns one chunk into a waveform (duration estimate, pinyin,
loudness matching, ODE sampling, vocoder). This module adds what a server needs
around it: one model shared by many requests (GPU work serialised by a lock), a
seed per request so a fixed seed repeats, chunks yielded as they are done
(cross-faded exactly as F5-TTS does, so streaming and whole outputs are equal),
cancellation between chunks, and a warm-up at start.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..log import event, get_logger
from . import f5lib
from .models import SAMPLE_RATE, ModelFiles, build_model, build_vocoder

__all__ = ["Engine", "EngineConfig", "SynthesisParams", "Reference", "Cancelled", "crossfade", "SAMPLE_RATE"]

log = get_logger("engine")
# F5-TTS's chunking budget: chars of reference text per second, times the seconds left in a ~22 s window.
WINDOW_S = 22.0


class Cancelled(Exception):
    """The request was cancelled; raised between chunks."""


@dataclass(frozen=True)
class EngineConfig:
    model: str = "F5TTS_v1_Base"  # or "tiny-random"
    files: ModelFiles = ModelFiles()
    attn_backend: str = "torch"  # "torch" (SDPA) | "flash_attn": the bootstrap's verdict
    device: str | None = None  # None: cuda when available


@dataclass(frozen=True)
class SynthesisParams:
    speed: float = 1.0
    nfe_step: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float = -1.0
    cross_fade_duration: float = 0.15
    seed: int | None = None
    remove_silence: bool = False


@dataclass(frozen=True)
class Reference:
    audio: torch.Tensor  # (1, samples) float32 at 24 kHz, trimmed, clipped, padded
    text: str
    key: str  # sha256 of the samples and text

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / SAMPLE_RATE


def crossfade(waves: Iterator[np.ndarray], fade: int) -> Iterator[np.ndarray]:
    """Join waveforms with F5-TTS's linear cross-fade, yielding as soon as samples are final.

    The overlap with the next chunk is ``min(fade, len(output so far), len(next))``,
    as in ``infer_batch_process``; the last ``fade`` samples are held back until the
    next chunk (or the end) decides them.
    """
    held: np.ndarray | None = None
    for wave in waves:
        wave = np.asarray(wave, dtype=np.float32)
        if held is None:
            out = wave
        else:
            n = min(fade, len(held), len(wave))
            if n <= 0:
                out = np.concatenate([held, wave])
            else:
                mixed = held[len(held) - n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
                out = np.concatenate([held[: len(held) - n], mixed.astype(np.float32), wave[n:]])
        cut = max(len(out) - fade, 0)
        if cut:
            yield out[:cut]
        held = out[cut:]
    if held is not None and len(held):
        yield held


class Engine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        started = time.monotonic()
        self.model = build_model(config.model, config.files, attn_backend=config.attn_backend,
                                 attn_mask_enabled=False, device=self.device)
        self.vocoder = build_vocoder(config.model, config.files, device=self.device)
        self.dtype = next(self.model.parameters()).dtype
        self._lock = threading.Lock()
        self.load_seconds = round(time.monotonic() - started, 3)
        event(log, "engine loaded", phase="engine.load", model=config.model, device=self.device,
              dtype=str(self.dtype), attn_backend=config.attn_backend, duration_ms=self.load_seconds * 1000)

    @property
    def random_weights(self) -> bool:
        return self.config.files.checkpoint is None

    def info(self) -> dict:
        return {
            "model": self.config.model,
            "random_weights": self.random_weights,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "attn_backend": self.config.attn_backend,
            "sample_rate": SAMPLE_RATE,
            "load_seconds": self.load_seconds,
        }

    # -- references ----------------------------------------------------------------

    def reference(self, samples: np.ndarray, text: str) -> Reference:
        """A reference voice from samples already prepared by ``serving.audio`` (24 kHz mono, clipped as F5-TTS does)."""
        key = hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes() + text.encode()).hexdigest()
        # F5-TTS ends the reference text with sentence punctuation and a space, so chunks start cleanly.
        text = text.strip()
        if not text.endswith(("。", ".")):
            text += "."
        text = text if text.endswith("。") else text + " "
        return Reference(torch.from_numpy(np.array(samples, dtype=np.float32))[None], text, key)

    # -- synthesis -----------------------------------------------------------------

    def chunks(self, reference: Reference, text: str, speed: float) -> list[str]:
        """F5-TTS's split of ``text`` for this reference (longer references leave room for less text)."""
        ref_bytes = len(reference.text.encode("utf-8"))
        max_chars = int(ref_bytes / reference.seconds * (WINDOW_S - reference.seconds) * speed)
        return f5lib.utils_infer.chunk_text(text, max_chars=max(max_chars, 1))

    def _chunk_waves(self, reference: Reference, pieces: list[str], params: SynthesisParams, seed: int,
                     cancelled: Callable[[], bool] | None) -> Iterator[np.ndarray]:
        for index, piece in enumerate(pieces):
            if cancelled and cancelled():
                raise Cancelled(f"cancelled before chunk {index + 1} of {len(pieces)}")
            with self._lock:
                # One seed per chunk, set under the lock: the same request gives the same audio
                # whatever else the worker is doing.
                torch.manual_seed(seed + index)
                wave, _sr, _mel = next(f5lib.utils_infer.infer_batch_process(
                    (reference.audio, SAMPLE_RATE), reference.text, [piece], self.model, self.vocoder,
                    mel_spec_type="vocos", progress=None, target_rms=0.1, cross_fade_duration=0.0,
                    nfe_step=params.nfe_step, cfg_strength=params.cfg_strength,
                    sway_sampling_coef=params.sway_sampling_coef, speed=params.speed, device=self.device,
                ))
            yield np.asarray(wave, dtype=np.float32).reshape(-1)

    def stream(self, reference: Reference, text: str, params: SynthesisParams = SynthesisParams(),
               cancelled: Callable[[], bool] | None = None) -> Iterator[np.ndarray]:
        """Audio in pieces, in order, as each text chunk is synthesised (cross-faded)."""
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        pieces = self.chunks(reference, text, params.speed)
        fade = int(params.cross_fade_duration * SAMPLE_RATE)
        yield from crossfade(self._chunk_waves(reference, pieces, params, seed, cancelled), fade)

    def synthesize(self, reference: Reference, text: str, params: SynthesisParams = SynthesisParams(),
                   cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        audio = np.concatenate(list(self.stream(reference, text, params, cancelled)) or [np.zeros(0, np.float32)])
        if params.remove_silence:
            audio = _remove_long_silences(audio)
        return audio

    def warm_up(self) -> float:
        """One short synthesis, so the first request pays no allocation or kernel-selection cost."""
        started = time.monotonic()
        rng = np.random.default_rng(0)
        voice = (0.1 * rng.standard_normal(SAMPLE_RATE * 2)).astype(np.float32)
        self.synthesize(self.reference(voice, "Warm up."), "Warming up the worker.",
                        SynthesisParams(nfe_step=2, seed=0))
        seconds = round(time.monotonic() - started, 3)
        event(log, "engine warmed up", phase="engine.warm_up", duration_ms=seconds * 1000)
        return seconds

    def params_json(self, params: SynthesisParams) -> dict:
        return asdict(params)


def _remove_long_silences(audio: np.ndarray) -> np.ndarray:
    """F5-TTS's remove_silence_for_generated_wav: drop silences over 1 s (below -50 dBFS), keep 500 ms of each."""
    from pydub import AudioSegment, silence

    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    segment = AudioSegment(pcm.tobytes(), frame_rate=SAMPLE_RATE, sample_width=2, channels=1)
    kept = silence.split_on_silence(segment, min_silence_len=1000, silence_thresh=-50, keep_silence=500, seek_step=10)
    joined = sum(kept, AudioSegment.silent(duration=0)) if kept else segment
    return np.frombuffer(joined.raw_data, dtype=np.int16).astype(np.float32) / 32767
