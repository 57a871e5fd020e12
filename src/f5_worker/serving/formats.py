"""Output formats the worker produces, and the sample rates each one can carry.

Pure data, shared by the request schema (which rejects a rate a format cannot carry
before any synthesis runs) and the encoder.
"""

from __future__ import annotations

__all__ = [
    "FORMATS",
    "CONTENT_TYPES",
    "FORMAT_RATES",
    "MODEL_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "rate_problem",
]

# F5-TTS (Vocos and BigVGAN vocoders) generates 24 kHz audio; references are brought to this rate.
MODEL_SAMPLE_RATE = 24_000
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000

FORMATS = ("wav", "flac", "mp3", "opus", "pcm")
CONTENT_TYPES = {
    "wav": "audio/wav",  # 16-bit PCM
    "flac": "audio/flac",  # 16-bit
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",  # Opus in an Ogg container, as OpenAI's API returns it
    "pcm": "audio/L16",  # raw signed 16-bit little-endian, mono, no header
}
# Formats limited to a fixed set of rates; the others take any rate in [MIN, MAX].
FORMAT_RATES = {
    "opus": (8_000, 12_000, 16_000, 24_000, 48_000),  # the rates the Opus codec defines
    "mp3": (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000),  # MPEG-1/2/2.5
}


def rate_problem(fmt: str, sample_rate: int) -> str | None:
    """Why ``fmt`` cannot carry ``sample_rate``, or None when it can."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        return f"sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}, got {sample_rate}"
    rates = FORMAT_RATES.get(fmt)
    if rates and sample_rate not in rates:
        return (f"sample_rate {sample_rate} is not available for {fmt}; "
                f"use one of {', '.join(str(r) for r in rates)}")
    return None
