#!/usr/bin/env python3
"""Where does host memory grow per request on the GPU? RSS after every 10 jobs, three ways:
the engine in the main thread, the service in the main thread, the service on a thread pool (as the
handler runs it). F5TTS_v1_Base size, random weights, NFE 32, the load test's text and reference."""

import asyncio
import base64
import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "lib"))
from support.engine import tone, wav_bytes  # noqa: E402

from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams  # noqa: E402
from f5_worker.engine.models import ModelFiles  # noqa: E402
from f5_worker.serving.service import Service, ServiceConfig  # noqa: E402


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


TEXT = "The quick brown fox jumps over the lazy dog, and the worker answers every request."
engine = Engine(EngineConfig(model="F5TTS_v1_Base", files=ModelFiles(), device="cuda"))
engine.warm_up()
service = Service(engine, ServiceConfig(voices_dir=Path("/tmp/none")))
ref = base64.b64encode(wav_bytes(tone(2.0))).decode()
job = lambda i: {"text": TEXT, "ref_audio": ref, "ref_text": "A steady tone for the reference.", "seed": i}
voice = service.reference(service_request := __import__("f5_worker.serving.request", fromlist=["x"]).parse_request(job(0)))
results = {}
import ctypes  # noqa: E402
import tracemalloc  # noqa: E402

libc = ctypes.CDLL("libc.so.6")


def trimmed(i):
    engine.synthesize(voice, TEXT, SynthesisParams(seed=i))
    libc.malloc_trim(0)


def sampler_only(i):
    import torch
    with torch.inference_mode():
        engine.model.sample(cond=voice.audio.to("cuda"), text=[voice.text + TEXT], duration=1200, steps=32,
                            cfg_strength=2.0, sway_sampling_coef=-1.0)


def vocoder_only(i):
    import torch
    with torch.inference_mode():
        engine.vocoder.decode(torch.randn(1, 100, 800, device="cuda")).cpu()


tracemalloc.start()
for name, run in [
    ("engine_main_thread", lambda i: engine.synthesize(voice, TEXT, SynthesisParams(seed=i))),
    ("engine_with_malloc_trim", trimmed),
    ("sampler_only", sampler_only),
    ("vocoder_only", vocoder_only),
    ("service_thread_pool", lambda i: asyncio.run(asyncio.to_thread(service.run, job(i)))),
]:
    gc.collect()
    series = [round(rss_mib(), 1)]
    for i in range(60):
        run(i)
        if (i + 1) % 10 == 0:
            gc.collect()
            series.append(round(rss_mib(), 1))
    traced, _peak = tracemalloc.get_traced_memory()
    results[name] = {"rss_mib_every_10_jobs": series, "growth_per_100_jobs": round((series[-1] - series[1]) / 50 * 100, 1),
                     "python_heap_mib": round(traced / 1024**2, 1)}
    print(name, results[name], flush=True)
print(json.dumps(results))
