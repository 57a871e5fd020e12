#!/usr/bin/env python3
"""Where does host memory grow per request on the GPU? RSS after every 10 jobs, five ways:
the engine in the main thread (with and without malloc_trim), the sampler alone, the vocoder alone, the
service on a thread pool (as the handler runs it). F5TTS_v1_Base size, random weights, NFE 32, the load
test's text and reference.

    python bench/probes/gpu_rss_probe.py [--jobs 60]
    python bench/probes/gpu_rss_probe.py --model tiny-random --device cpu --jobs 20 --nfe 4   # smoke run
"""

import argparse
import asyncio
import base64
import ctypes
import gc
import json
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "lib"))
from support.engine import tone, wav_bytes  # noqa: E402

from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams  # noqa: E402
from f5_worker.engine.models import ModelFiles  # noqa: E402
from f5_worker.engine.sampler import SampleRequest, SamplingConfig  # noqa: E402
from f5_worker.serving.request import parse_request  # noqa: E402
from f5_worker.serving.service import Service, ServiceConfig  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, and the worker answers every request."


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="F5TTS_v1_Base")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--jobs", type=int, default=60, help="per way; RSS is read every 10")
    parser.add_argument("--nfe", type=int, default=32)
    args = parser.parse_args()
    import torch

    engine = Engine(EngineConfig(model=args.model, files=ModelFiles(), device=args.device))
    engine.warm_up()
    service = Service(engine, ServiceConfig(voices_dir=Path("/tmp/none")))
    ref = base64.b64encode(wav_bytes(tone(2.0))).decode()

    def job(i):
        return {"text": TEXT, "ref_audio": ref, "ref_text": "A steady tone for the reference.", "seed": i,
                "nfe_step": args.nfe}

    voice = service.reference(parse_request(job(0)))
    params = lambda i: SynthesisParams(nfe_step=args.nfe, seed=i)  # noqa: E731
    libc = ctypes.CDLL("libc.so.6")
    with torch.inference_mode():
        mel = engine.model.mel_spec(voice.audio.to(engine.device)).permute(0, 2, 1)[0].to(engine.dtype)
    tokens = torch.randint(1, 100, (120,))

    def trimmed(i):
        engine.synthesize(voice, TEXT, params(i))
        libc.malloc_trim(0)

    def sampler_only(i):  # on the batcher's thread, which owns the sampler
        request = [SampleRequest(mel, tokens, 1200, i)]
        engine.batcher.call(lambda: engine.sampler.sample(request, SamplingConfig(steps=args.nfe)))

    def vocoder_only(i):
        with torch.inference_mode():
            engine.vocoder.decode(torch.randn(1, 100, 800, device=engine.device)).cpu()

    results = {}
    tracemalloc.start()
    for name, run in [
        ("engine_main_thread", lambda i: engine.synthesize(voice, TEXT, params(i))),
        ("engine_with_malloc_trim", trimmed),
        ("sampler_only", sampler_only),
        ("vocoder_only", vocoder_only),
        ("service_thread_pool", lambda i: asyncio.run(asyncio.to_thread(service.run, job(i)))),
    ]:
        gc.collect()
        series = [round(rss_mib(), 1)]
        for i in range(args.jobs):
            run(i)
            if (i + 1) % 10 == 0:
                gc.collect()
                series.append(round(rss_mib(), 1))
        traced, _peak = tracemalloc.get_traced_memory()
        growth = (series[-1] - series[1]) / max(len(series) - 2, 1) / 10 * 100 if len(series) > 2 else None
        results[name] = {"rss_mib_every_10_jobs": series, "growth_per_100_jobs": growth and round(growth, 1),
                         "python_heap_mib": round(traced / 1024**2, 1)}
        print(name, results[name], flush=True)
    print(json.dumps(results))
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
