#!/usr/bin/env python3
"""On a GPU machine: start the whole worker (bootstrap, engine, warm-up) and serve one job in-process.

    python bench/gpu_worker_check.py   (F5_WORKER_* settings from the environment; tiny-random needs no weights)

Prints the bootstrap's flash-attn verdict, the engine it loaded, and the job's result: used to show that a
worker whose flash-attn wheel is broken falls back to SDPA and still serves.
"""

import base64
import io
import json
import time
import wave

import numpy as np

started = time.monotonic()
from f5_worker import log  # noqa: E402
from f5_worker.settings import Settings  # noqa: E402
from f5_worker.worker import start  # noqa: E402

settings = Settings.from_env()
log.configure(settings.log_format)  # the phases and their durations go to stderr
worker = start(settings)
ready = time.monotonic() - started
tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(48000) / 24000) * 32767).astype(np.int16)
buffer = io.BytesIO()
with wave.open(buffer, "wb") as out:
    out.setnchannels(1), out.setsampwidth(2), out.setframerate(24000), out.writeframes(tone.tobytes())
if worker.background is not None:  # a new volume: the flash-attn verdict comes in the background
    worker.background.join()
result = worker.service.run({"text": "The worker still serves.", "ref_audio": base64.b64encode(buffer.getvalue()).decode(),
                             "ref_text": "A steady tone.", "nfe_step": 8, "seed": 0})
verdict = worker.report.flash_attn
print(json.dumps({
    "ready_after_s": round(ready, 2),
    "flash_attn": {"backend": verdict.backend, "reason": verdict.reason, "attention": verdict.attention.to_json()},
    "engine": worker.service.engine.info(),
    "job": {k: (v if k != "audio" else f"{len(v)} base64 chars") for k, v in result.items()},
}, indent=2))
