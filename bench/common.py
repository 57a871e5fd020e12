"""What the engine benchmarks share: timing on any device, the run's identity, F5-TTS's own modules.

Imported by the scripts next to it (``python bench/X.py`` puts bench/ on ``sys.path``); a probe in
bench/probes/ puts bench/ there first. Nothing here imports the worker or F5-TTS at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

__all__ = ["ROOT", "sync", "timed", "peak_gib", "reset_peak", "environment", "source_revision",
           "flash_attn_available", "f5_reference", "mean_rel_diff", "report", "probe_arguments", "random_engine",
           "start_as_serving", "timed_phases", "GpuClocks"]

ROOT = Path(__file__).resolve().parent.parent
WARM_UPS = 2


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    """The most GPU memory allocated since ``reset_peak``; None on the CPU."""
    return round(torch.cuda.max_memory_allocated() / 1024**3, 2) if device.startswith("cuda") else None


def timed(fn: Callable[[], object], runs: int, device: str, warm_ups: int = WARM_UPS) -> tuple[float, float | None]:
    """(median seconds of ``runs`` calls after ``warm_ups``, peak GiB allocated during the timed calls)."""
    for _ in range(warm_ups):
        fn()
    reset_peak(device)
    times = []
    for _ in range(runs):
        sync(device)
        began = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times), peak_gib(device)


def source_revision() -> str | None:
    """`git describe --always --dirty` of this checkout; None where the tree came without .git (the GPU machine)."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str, model: str) -> dict:
    """The first keys of every result: where, with what, which worker, which model size."""
    return {"gpu": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu", "torch": torch.__version__,
            "source": source_revision(), "model": model, "device": device,
            "weights": "random (speed does not depend on weight values; the audio is noise)"}


def probe_arguments(doc: str) -> argparse.ArgumentParser:
    """What every engine probe takes: --model, --device (tiny-random on cpu: a smoke run) and --json."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="F5TTS_v1_Base")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json")
    return parser


def random_engine(model: str, device: str, max_batch: int):
    """The worker's engine at ``model``'s size with random weights (no checkpoint: nothing is downloaded)."""
    from f5_worker.engine.engine import Engine, EngineConfig
    from f5_worker.engine.models import ModelFiles

    return Engine(EngineConfig(model=model, files=ModelFiles(), max_batch=max_batch, device=device))


def start_as_serving(engine) -> float:
    """An engine's (or a pool's) background start-up work, as serving runs it (Triton kernels compiled and
    checked, tuning, graphs of likely lengths), waited for; its seconds."""
    began = time.perf_counter()
    engine.start_background()
    while engine.pending:
        time.sleep(0.1)
    return time.perf_counter() - began


def flash_attn_available() -> bool:
    """Whether flash-attn imports here (on the GPU machine: activated by the caller through PYTHONPATH)."""
    try:
        from flash_attn import flash_attn_func  # noqa: F401  (flash-attn 2's: FA4's flash_attn/ alone has none)
    except ImportError as exc:
        print(f"flash_attn unavailable: {exc}", file=sys.stderr)
        return False
    return True


def f5_reference():
    """``tests/lib/support/f5_reference``: F5-TTS's own CFM, DiT, Vocos and ``utils_infer`` without F5-TTS's
    trainer imports, and ``cfm_like`` / ``vocos_like`` to give them the worker's weights.

    Import it after flash-attn is importable (or known not to be): F5-TTS's attention module looks for
    flash-attn once, when it is first imported.
    """
    if importlib.util.find_spec("f5_tts") is None:
        raise SystemExit("F5-TTS is not installed: on the CPU `pip install -e .[test]`; on the GPU machine it comes "
                         "with the kit (source bench/gpu_env.sh)")
    lib = str(ROOT / "tests" / "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    from support import f5_reference as module

    return module


def mean_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean |a - b| over mean |b| (b the reference), in float32."""
    a, b = a.float(), b.float()
    return float((a - b).abs().mean() / b.abs().mean())


def step_graph_as_profiled(engine, batch: int, frames: int):
    """The engine sampler's step graph for ``batch`` requests of ``frames``, in ``step_profile.py``'s setting:
    random x and inputs, every replay at t = 0.5 with step size 0 (x stays as it is: each replay the same work)."""
    from f5_worker.engine.engine import SynthesisParams

    sampler, dit = engine.sampler, engine.model.transformer
    with torch.inference_mode():
        sampler._step_inputs_for(32)
        graph = sampler._graph(batch, frames, SynthesisParams.cfg_strength)
        graph.x.normal_(), graph.inputs.normal_()
        steps = graph.step_inputs
        steps.conditionings.copy_(dit.time_conditioning(torch.tensor([0.5], device=graph.x.device,
                                                                     dtype=engine.dtype)))
        steps.sizes.zero_()
        steps.loaded = None
    torch.cuda.synchronize()
    return graph


def back_to_back_ms(graph, replays: int = 16, runs: int = 4) -> float:
    """A CUDA graph's ms per replay, replayed back to back: the median of ``runs`` - 1 runs of ``replays`` (the
    first, a warm-up, dropped). (``step_profile.replay_ms`` times single replays instead.)"""
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / replays)
    return round(statistics.median(times[1:]), 4)


def kernel_us(fn: Callable[[], object], calls: int = 20, runs: int = 5) -> float:
    """µs per call of ``fn`` on the GPU: the median of ``runs`` CUDA-event-timed runs of ``calls`` calls back to
    back, after three warm-up calls (for single kernels and other calls too short to time one by one)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000 / calls)
    return round(statistics.median(times), 1)


def graph_replay_us(fn: Callable[[], object]) -> float | str:
    """``kernel_us`` of ``fn`` captured into a CUDA graph as the engine captures (``engine.graphs.capture``), or
    why it could not be captured: whether a kernel can serve from the engine's graphs at all is a result."""
    from f5_worker.engine.graphs import GraphPool, capture

    try:
        (graph,) = capture([fn], "cuda", GraphPool())
        return kernel_us(graph.replay)
    except Exception as error:  # noqa: BLE001  not capturable is a result
        return f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"


@contextlib.contextmanager
def timed_phases(patches: list[tuple[object, str, str]], device: str) -> Iterator[dict[str, list[float]]]:
    """While the block runs, each ``(object, attribute, phase)`` of ``patches`` (a method, or a module's ``forward``,
    which ``__call__`` looks up on the instance) is timed between two synchronisations, which removes its overlap
    with the CPU's launches; yields {phase: [seconds of each call]}. The attributes are put back after."""
    spent: dict[str, list[float]] = defaultdict(list)

    def timed(name, fn):
        def wrapper(*a, **k):
            sync(device)
            began = time.perf_counter()
            result = fn(*a, **k)
            sync(device)
            spent[name].append(time.perf_counter() - began)
            return result
        return wrapper

    originals = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, phase in patches:
            setattr(obj, name, timed(phase, getattr(obj, name)))
        yield spent
    finally:
        for obj, name, fn in originals:
            setattr(obj, name, fn)


def report(out: dict, json_path: str | None) -> None:
    """A benchmark's result: printed whole, and written to ``json_path`` when given."""
    print(json.dumps(out, indent=1))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(out, f, indent=1)


class GpuClocks:
    """The GPU's SM clock and power, sampled by NVML every ``period_s`` on a thread while the ``with`` block runs:
    a step replayed alone may run at a higher clock than a batch that keeps the card busy for seconds (power
    limit), so a throughput figure is read beside the clock it ran at. ``result``: mean and lowest SM clock (MHz),
    mean power (W), samples; or the reason NVML could not be read."""

    def __init__(self, index: int = 0, period_s: float = 0.05):
        self.index, self.period_s = index, period_s
        self.result: dict = {}
        self._stop = None

    def __enter__(self) -> GpuClocks:
        import threading

        try:
            import pynvml  # nvidia-ml-py, a worker dependency

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception as error:  # noqa: BLE001  no NVML (the CPU): said, not raised
            self.result = {"error": f"{type(error).__name__}: {error}"}
            return self
        clocks: list[int] = []
        watts: list[float] = []
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(self.period_s):
                clocks.append(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
                watts.append(pynvml.nvmlDeviceGetPowerUsage(handle) / 1000)

        self._samples = (clocks, watts)
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is None:
            return
        self._stop.set()
        self._thread.join()
        clocks, watts = self._samples
        if clocks:
            self.result = {"sm_mhz_mean": round(statistics.mean(clocks)), "sm_mhz_min": min(clocks),
                           "power_w_mean": round(statistics.mean(watts)), "samples": len(clocks)}
        else:
            self.result = {"error": "no sample (the block ended within one period)"}
