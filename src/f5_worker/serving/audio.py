"""Audio in and out: decode a reference to 24 kHz mono float32, encode the output a request asked for.

Decoding tries libsndfile first (through soundfile: wav, flac, ogg/vorbis, ogg/opus and,
with libsndfile >= 1.1 as soundfile >= 0.12 wheels bundle, mp3), reading the duration
from the header so an over-long file is refused before its samples are read. Anything
libsndfile cannot open goes to ffmpeg when it is installed (m4a/aac, webm...), fed on
stdin with ``-protocol_whitelist pipe`` so a crafted playlist cannot make it open files
or URLs, under a timeout, and told to stop after the longest duration we accept.

Encoding writes wav (16-bit PCM), flac (16-bit), mp3, opus (in Ogg) through libsndfile
and raw pcm (s16le) by hand, resampling first when the request asked for another rate.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile as sf

from ..settings import env_name
from .errors import AudioError
from .formats import FORMATS, MODEL_SAMPLE_RATE, rate_problem
from .refclip import clip_reference

__all__ = ["decode", "encode", "resample", "prepare_reference", "check_output_duration",
           "FFMPEG_TIMEOUT_S", "MODEL_SAMPLE_RATE"]

FFMPEG_TIMEOUT_S = 30.0
MIN_AUDIO_BYTES = 44  # a canonical wav header; no wav, flac, mp3 or ogg file we can decode is shorter
MAX_REF_SECONDS_SETTING = env_name("max_ref_seconds")
MAX_OUTPUT_SECONDS_SETTING = env_name("max_output_seconds")
# format -> (libsndfile major format, subtype, sample dtype we hand it)
_SNDFILE = {
    "wav": ("WAV", "PCM_16", "int16"),
    "flac": ("FLAC", "PCM_16", "int16"),
    "mp3": ("MP3", "MPEG_LAYER_III", "float32"),
    "opus": ("OGG", "OPUS", "float32"),
}


def _too_long(seconds: float, max_seconds: float) -> AudioError:
    return AudioError(
        f"reference audio is {seconds:.1f} s long, over the limit of {max_seconds:g} s "
        f"({MAX_REF_SECONDS_SETTING}); send a shorter clip (F5-TTS uses only about the first 12 s)")


def _with_sndfile(data: bytes, max_seconds: float) -> tuple[np.ndarray, int] | str:
    """(samples as frames x channels, rate), or why libsndfile could not read them."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            if rate <= 0:
                return f"sample rate {rate}"
            limit = int(max_seconds * rate)
            if 0 < f.frames < 2**62 and f.frames > limit:  # the header's count; streams may not give one
                raise _too_long(f.frames / rate, max_seconds)
            samples = f.read(frames=limit + 1, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:  # sf.LibsndfileError is a RuntimeError
        return str(exc) or type(exc).__name__
    if len(samples) > limit:
        raise _too_long(len(samples) / rate, max_seconds)
    return samples, rate


def _with_ffmpeg(data: bytes, max_seconds: float, binary: str, timeout_s: float) -> tuple[np.ndarray, int] | str:
    command = [
        binary, "-hide_banner", "-loglevel", "error", "-nostats",
        "-protocol_whitelist", "pipe", "-i", "pipe:0",
        "-map", "0:a:0", "-t", f"{max_seconds + 1:.3f}",
        "-ac", "1", "-ar", str(MODEL_SAMPLE_RATE), "-f", "f32le", "pipe:1",
    ]
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"ffmpeg took longer than {timeout_s:g} s"
    except OSError as exc:
        return f"ffmpeg could not run ({exc})"
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"ffmpeg exited with status {done.returncode}"
    usable = len(done.stdout) // 4 * 4
    samples = np.frombuffer(done.stdout[:usable], dtype="<f4").reshape(-1, 1)
    if len(samples) > int(max_seconds * MODEL_SAMPLE_RATE):
        raise _too_long(len(samples) / MODEL_SAMPLE_RATE, max_seconds)
    return samples, MODEL_SAMPLE_RATE


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's sinc filter, as F5-TTS uses for references)."""
    if from_rate == to_rate or not samples.size:
        return samples.astype(np.float32, copy=False)
    import torch  # deferred: importing torch takes a second, and only resampling needs it
    import torchaudio.functional

    tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return torchaudio.functional.resample(tensor, from_rate, to_rate).numpy()


def decode(data: bytes, *, max_seconds: float, ffmpeg: str | bool = True,
           ffmpeg_timeout_s: float = FFMPEG_TIMEOUT_S) -> np.ndarray:
    """Reference bytes -> mono float32 samples at 24 kHz (read-only), or ``AudioError``.

    ``ffmpeg``: True finds it on PATH, False never uses it, a string is its path.
    """
    if not data:
        raise AudioError("reference audio is empty (0 bytes)")
    decoded = _with_sndfile(data, max_seconds)
    if isinstance(decoded, str):
        reasons = [f"libsndfile: {decoded}"]
        binary = shutil.which("ffmpeg") if ffmpeg is True else (ffmpeg or None)
        if binary:
            decoded = _with_ffmpeg(data, max_seconds, binary, ffmpeg_timeout_s)
            if isinstance(decoded, str):
                reasons.append(f"ffmpeg: {decoded}")
        if isinstance(decoded, str):
            short = (f"; {len(data)} bytes is too short for any audio file (a wav header alone is "
                     f"{MIN_AUDIO_BYTES}): was it cut off?" if len(data) < MIN_AUDIO_BYTES else "")
            raise AudioError(
                f"reference audio ({len(data)} bytes) is not audio we can decode ({'; '.join(reasons)}){short}; "
                "send wav, flac, mp3 or ogg (vorbis/opus)")
    frames, rate = decoded
    if not len(frames):
        raise AudioError("reference audio has no samples (0 s long)")
    if not np.isfinite(frames).all():
        raise AudioError("reference audio contains NaN or infinite samples; send ordinary PCM or compressed audio")
    mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    out = np.ascontiguousarray(resample(mono, rate, MODEL_SAMPLE_RATE), dtype=np.float32)
    out.flags.writeable = False
    return out


def prepare_reference(data: bytes, *, max_seconds: float, ffmpeg: str | bool = True) -> np.ndarray:
    """Decode, then clip as F5-TTS does (``refclip``); what the engine conditions on. Read-only."""
    samples = clip_reference(decode(data, max_seconds=max_seconds, ffmpeg=ffmpeg), MODEL_SAMPLE_RATE)
    if not samples.size:
        raise AudioError("reference audio is silent (quieter than -42 dBFS throughout); send a recording of speech")
    samples.flags.writeable = False
    return samples


def check_output_duration(n_samples: int, sample_rate: int, max_seconds: float) -> None:
    seconds = n_samples / sample_rate
    if seconds > max_seconds:
        raise AudioError(
            f"generated audio is {seconds:.1f} s long, over the limit of {max_seconds:g} s "
            f"({MAX_OUTPUT_SECONDS_SETTING}); send shorter text or a higher speed")


def encode(samples: np.ndarray, sample_rate: int = MODEL_SAMPLE_RATE, fmt: str = "wav", *,
           source_rate: int = MODEL_SAMPLE_RATE) -> bytes:
    """Mono float samples at ``source_rate`` -> a complete file of ``fmt`` at ``sample_rate``."""
    if fmt not in FORMATS:
        raise AudioError(f"output format {fmt!r} is not one of {', '.join(FORMATS)}")
    problem = rate_problem(fmt, sample_rate)
    if problem:
        raise AudioError(problem)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"expected mono samples (one dimension), got shape {samples.shape}")
    if not samples.size:
        raise AudioError("there is no audio to encode (0 samples)")
    samples = np.clip(np.nan_to_num(resample(samples, source_rate, sample_rate)), -1.0, 1.0)
    pcm16 = np.round(samples * 32767).astype("<i2")
    if fmt == "pcm":
        return pcm16.tobytes()
    major, subtype, dtype = _SNDFILE[fmt]
    buffer = io.BytesIO()
    try:
        sf.write(buffer, pcm16 if dtype == "int16" else samples, sample_rate, format=major, subtype=subtype)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"libsndfile could not write {fmt} at {sample_rate} Hz ({exc}); "
                         "pick another output_format") from exc
    return buffer.getvalue()
