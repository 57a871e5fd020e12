#!/usr/bin/env python3
"""Do step-graph captures survive another thread using the GPU meanwhile? (the sampler's thread_local capture mode)

    python bench/probes/capture_threads.py            # on the GPU machine, repo root, PYTHONPATH=src

While one thread allocates, multiplies and synchronises its own stream in a loop (as the Triton kernels'
compile-and-check thread and transcription on request threads do), the sampler captures the step graphs
of 19 new lengths (tiny-random), then switches to the checked Triton kernels and samples again. Prints
how many captures succeeded; an invalidated capture raises instead. Not run yet: written when the device
budget was spent (2026-12-01).
"""

import threading

import torch

from f5_worker.engine.models import ModelFiles, build_model
from f5_worker.engine.nn import kernels
from f5_worker.engine.sampler import SampleRequest, Sampler, SamplingConfig


def main() -> int:
    model = build_model("tiny-random", ModelFiles(), device="cuda")
    stop = threading.Event()

    def other_thread():
        n, stream = 0, torch.cuda.Stream()
        # Its own generator: the default CUDA generator is registered with every capture, and another thread
        # drawing from it meanwhile fails ("Offset increment outside graph capture": seen on the H200).
        generator = torch.Generator(device="cuda").manual_seed(0)
        while not stop.is_set():
            with torch.cuda.stream(stream):
                x = torch.randn(1000 + n % 7, 1000, device="cuda", generator=generator)  # new sizes: allocations
                x @ x.T
            stream.synchronize()
            n += 1
        print("other thread: iterations", n)

    thread = threading.Thread(target=other_thread)
    thread.start()
    sampler = Sampler(model)
    cond = torch.randn(50, 100, device="cuda", dtype=torch.float16)
    text = torch.randint(0, 100, (30,))
    try:
        for frames in range(100, 400, 16):
            sampler.sample([SampleRequest(cond, text, frames, 0)], SamplingConfig(steps=4))
    finally:
        stop.set()
        thread.join()
    print("captures ok:", len(sampler._graphs))
    print("kernels check:", kernels.check(model.transformer))
    model.transformer.use_kernels(True)
    sampler.forget_graphs()
    mel = sampler.sample([SampleRequest(cond, text, 128, 0)], SamplingConfig(steps=4))[0]
    print("with the kernels, mean |mel|:", float(mel.float().abs().mean()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
