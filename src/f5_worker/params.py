"""F5-TTS's synthesis parameters: their defaults and the ranges a request may ask for, in one place.

The defaults are F5-TTS's own (``f5_tts/infer/utils_infer.py``: ``nfe_step=32``,
``cfg_strength=2.0``, ``sway_sampling_coef=-1``, ``speed=1.0``, ``cross_fade_duration=0.15``).
The engine's ``SynthesisParams`` and ``SamplingConfig`` and the request schema all take
theirs from here. Pure data: importing it imports nothing heavy.
"""

from __future__ import annotations

__all__ = ["SPEED", "NFE_STEP", "CFG_STRENGTH", "SWAY_SAMPLING_COEF", "CROSS_FADE_DURATION", "REMOVE_SILENCE",
           "SEED_MAX", "RANGES"]

SPEED = 1.0
NFE_STEP = 32
CFG_STRENGTH = 2.0
SWAY_SAMPLING_COEF = -1.0
CROSS_FADE_DURATION = 0.15  # seconds
REMOVE_SILENCE = False
SEED_MAX = 2**31 - 1

# name -> (type, low, high), both bounds inclusive: what a request may ask for.
RANGES: dict[str, tuple[type, float, float]] = {
    "speed": (float, 0.3, 3.0),
    "nfe_step": (int, 4, 128),
    "cfg_strength": (float, 0.0, 10.0),
    "sway_sampling_coef": (float, -1.0, 1.0),
    "cross_fade_duration": (float, 0.0, 1.0),
    "seed": (int, 0, SEED_MAX),
}
