"""Transcribe a reference sent without its words, as F5-TTS does: Whisper through transformers' ASR pipeline.

F5-TTS (``preprocess_ref_audio_text`` in ``f5_tts/infer/utils_infer.py``) clips the reference first
and transcribes the clipped audio, so the text says exactly what the model is conditioned on; the
caller hands this module the same prepared samples the engine gets. On CUDA the model runs in
fp16 on the worker's GPU, else in fp32 on the CPU.

The model is loaded on first need (or, with ``F5_WORKER_ASR_PRELOAD=true``, on a background
thread at start: readiness never waits for it). transformers is an optional extra (``asr``),
imported only here, only then; without it the error says how to install it.

Transcripts are kept on the volume (``<volume>/f5-worker/cache/transcripts/``), named by the
sha256 of the model's name and the prepared samples, written whole (temp file + rename): a
reference is transcribed once, by whichever worker meets it first. Within one process, jobs
that need the same transcript at once wait for one transcription.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import unicodedata
from dataclasses import dataclass

import numpy as np

from ..fsutil import write_json_atomic
from ..log import event, get_logger, phase
from ..serving.errors import TranscriptionUnavailable
from ..settings import ASR_OFF, Settings, env_name
from .model import AsrFilesUnavailable, model_directory, parse_source

__all__ = ["Transcriber", "Transcript", "judge", "ASR_SAMPLE_RATE", "MAX_NEW_TOKENS", "INSTALL_HINT"]

log = get_logger("asr")
ASR_SAMPLE_RATE = 16_000  # Whisper's
MAX_NEW_TOKENS = 220  # a 12 s reference is well under 100 tokens; Whisper allows 448 in all
RETRY_AFTER_FAILURE_S = 60.0  # a model that failed to load is tried again after this long, not by every job
INSTALL_HINT = ("install the asr extra into the worker's environment (pip install 'f5-worker[asr]', which brings "
                "transformers)")
# Speech runs at roughly 3-25 characters a second (Chinese at the low end, fast English at the top).
MAX_CHARS_PER_SECOND = 40.0
LOCK_STRIPES = 64


@dataclass(frozen=True)
class Transcript:
    text: str
    model: str
    cached: bool  # read from the volume's cache, not transcribed now
    problem: str | None = None  # why the text looks wrong for the audio (``judge``), if it does


def judge(text: str, seconds: float) -> str | None:
    """Why ``text`` is unlikely to be what ``seconds`` of speech say, or None if it is plausible."""
    words = [c for c in text if unicodedata.category(c)[0] in "LN"]
    if not words:
        return f"it contains no words ({text[:40]!r})"
    if seconds > 0 and len(text) / seconds > MAX_CHARS_PER_SECOND:
        return (f"it is {len(text)} characters for {seconds:.1f} s of audio, more than anyone says "
                f"({MAX_CHARS_PER_SECOND:g} a second at most)")
    if sum(1 for c in text if unicodedata.category(c)[0] == "C") > len(text) // 10:
        return "it is mostly control characters"
    return None


class Transcriber:
    def __init__(self, settings: Settings, device: str | None = None):
        if settings.asr_model == ASR_OFF:
            raise ValueError("transcription is off; build no Transcriber")
        self.settings = settings
        self.model_name = settings.asr_model
        self.device = device
        self.cache_dir = settings.root / "cache" / "transcripts"
        self.state = "not loaded"  # -> loading -> ready | failed
        self.error: str | None = None
        self.calls = 0  # times the model ran (tests count them)
        self._pipe = None
        self._failed_at = 0.0
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        # Jobs needing the same transcript wait for one transcription; striped, so the locks stay few.
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def status(self) -> dict:
        return {"model": self.model_name, "state": self.state, **({"error": self.error} if self.error else {})}

    # -- loading -----------------------------------------------------------------------

    def preload(self) -> threading.Thread:
        """Load on a background thread (``F5_WORKER_ASR_PRELOAD``); a failure is logged and retried on need."""
        def work():
            try:
                self._load()
            except TranscriptionUnavailable:
                pass  # logged by _load; a job that needs it gets the message

        thread = threading.Thread(target=work, name="f5-worker-asr-preload", daemon=True)
        thread.start()
        return thread

    def _load(self):
        if self._pipe is not None:
            return self._pipe
        with self._load_lock:
            if self._pipe is not None:
                return self._pipe
            if self.state == "failed" and time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_S:
                raise TranscriptionUnavailable(self.error or "the ASR model failed to load", status=503)
            self.state = "loading"
            try:
                with phase(log, "asr.load", model=self.model_name) as outcome:
                    self._pipe = self._build()
                    outcome.update(device=str(self._pipe.device))
            except TranscriptionUnavailable as exc:
                self._fail(str(exc))
                raise
            except AsrFilesUnavailable as exc:
                self._fail(str(exc))
                raise TranscriptionUnavailable(str(exc), status=503) from exc
            except Exception as exc:  # noqa: BLE001  transformers' errors are many; each becomes a message
                self._fail(f"the ASR model {self.model_name} could not be loaded ({type(exc).__name__}: {exc})")
                raise TranscriptionUnavailable(self.error, status=503) from exc
            self.state, self.error = "ready", None
            return self._pipe

    def _fail(self, message: str) -> None:
        self.state, self.error, self._failed_at = "failed", message, time.monotonic()
        event(log, "asr unavailable", phase="asr.load", level=logging.WARNING, error=message)

    def _build(self):
        try:
            import transformers
        except ImportError as exc:
            raise TranscriptionUnavailable(
                f"ref_text is missing and transcribing it needs transformers, which is not installed: "
                f"{INSTALL_HINT}, or send ref_text (set {env_name('asr_model')}=off to make it required)") from exc
        import torch

        directory, report = model_directory(self.settings, parse_source(self.model_name))
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        major = int(transformers.__version__.split(".")[0])
        minor = int(transformers.__version__.split(".")[1])
        dtype_arg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        event(log, "asr files", phase="asr.files", directory=str(directory), **report)
        return transformers.pipeline("automatic-speech-recognition", model=str(directory), device=device,
                                     **{dtype_arg: dtype})

    # -- transcribing ------------------------------------------------------------------

    def key(self, samples: np.ndarray) -> str:
        data = np.ascontiguousarray(samples, dtype=np.float32).tobytes()
        return hashlib.sha256(self.model_name.encode() + b"\0" + data).hexdigest()

    def _lock_for(self, key: str) -> threading.Lock:
        return self._stripes[int(key[:8], 16) % LOCK_STRIPES]

    def _cached(self, key: str) -> str | None:
        try:
            entry = json.loads((self.cache_dir / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        text = entry.get("text") if isinstance(entry, dict) else None
        return text if isinstance(text, str) and text.strip() else None

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> Transcript:
        """The words in ``samples`` (the prepared, clipped reference), from the volume's cache or the model."""
        seconds = len(samples) / sample_rate
        key = self.key(samples)
        with self._lock_for(key):
            text = self._cached(key)
            if text is not None:
                return Transcript(text, self.model_name, True, judge(text, seconds))
            text = self._run(samples, sample_rate)
            if not text:
                raise TranscriptionUnavailable(
                    f"the ASR model ({self.model_name}) heard no words in the reference ({seconds:.1f} s after "
                    "clipping); send ref_text, or a reference with clear speech")
            try:
                write_json_atomic(self.cache_dir / f"{key}.json", {"text": text, "model": self.model_name,
                                                                   "seconds": round(seconds, 3),
                                                                   "created": time.time()})
            except OSError as exc:  # a read-only or full volume: transcribe again next time
                event(log, "transcript not kept", phase="asr.cache", level=logging.WARNING, error=str(exc))
        return Transcript(text, self.model_name, False, judge(text, seconds))

    def _run(self, samples: np.ndarray, sample_rate: int) -> str:
        pipe = self._load()
        from ..serving.audio import resample

        audio = resample(np.array(samples, dtype=np.float32), sample_rate, ASR_SAMPLE_RATE)  # a writable copy
        options: dict = {"max_new_tokens": MAX_NEW_TOKENS}
        if "transcribe" in (getattr(pipe.model.generation_config, "task_to_id", None) or {}):
            options["task"] = "transcribe"  # as F5-TTS asks; the language is detected
        with self._run_lock, phase(log, "asr.transcribe", seconds=round(len(samples) / sample_rate, 2)):
            self.calls += 1
            result = pipe({"raw": audio, "sampling_rate": ASR_SAMPLE_RATE}, generate_kwargs=options,
                          return_timestamps=False)
        return str(result.get("text", "")).strip()

