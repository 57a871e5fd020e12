"""Several GPUs, one worker: an ``Engine`` per GPU, requests placed by load.

A RunPod worker may have 2 to 8 GPUs. ``load_engines`` builds one engine per selected GPU
(``F5_WORKER_GPUS``), in parallel threads (torch releases the GIL while it reads weights and
talks to the driver); each engine keeps its own batcher (its GPU thread), step graphs and
background tuning. With one device it returns a plain ``Engine``, exactly as a one-GPU
worker always had. ``EnginePool`` gives the callers the engine's surface:

    stream / synthesize     one request's chunks on one engine: the one with the least expected wait
                            (its batcher's queue at the measured time per batch, then requests in
                            flight per batch slot, then the lowest index)
    reference / chunks      device-free work, the first engine's
    attention / use_attention   the one flash-attn verdict, applied to every engine
    batcher                 a view of all the batchers: alive if any is, max_batch summed (what the
                            RunPod concurrency follows), expected_wait_s the least over live engines
    info / pending          the first engine's, plus ``engines``: each one's device, state, attention,
                            queue and pending work, or the reason it failed

One failing GPU (its engine fails to load, or its GPU thread stops) leaves the others serving;
``info()`` names it with the reason. The tuning record on the volume is shared by the engines: its
key names the GPU model, so GPUs of one kind read and write the same file (written atomically).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..attention_choice import AttentionChoice
from ..errors import ConfigError
from ..log import event, get_logger
from .batcher import Closed
from .engine import Engine, EngineConfig, Reference, SynthesisParams, whole

__all__ = ["EnginePool", "EngineFailure", "load_engines", "select_gpus", "devices_for"]

log = get_logger("engine.pool")


def select_gpus(spec: str, visible: int) -> tuple[int, ...]:
    """The GPU indices ``spec`` (``F5_WORKER_GPUS``: ``all``, a count, or ``i,j,...``) selects of ``visible``."""
    from ..settings import env_name

    if spec == "all":
        return tuple(range(visible))
    if "," not in spec:
        return tuple(range(min(int(spec), visible)))
    indices = tuple(int(item) for item in spec.rstrip(",").split(","))
    missing = [i for i in indices if i >= visible]
    if missing:
        raise ConfigError(f"{env_name('gpus')}={spec!r} names GPU {', '.join(map(str, missing))}, but "
                          f"{visible} {'is' if visible == 1 else 'are'} visible (indices 0 to {visible - 1}); "
                          "name visible GPUs, or use all")
    return indices


def devices_for(spec: str, visible: int) -> list[str | None]:
    """The engines' devices: ``[None]`` (the engine's own default, as one-GPU workers always had) for no GPU
    or the first one alone, else ``cuda:i`` for each selected GPU."""
    indices = select_gpus(spec, visible)
    if not indices or indices == (0,):
        return [None]
    return [f"cuda:{i}" for i in indices]


def load_engines(config: EngineConfig, devices: Sequence[str | None], *,
                 make: Callable[[EngineConfig], Engine] = Engine) -> Engine | EnginePool:
    """One engine per device: a plain ``Engine`` for one device, else an ``EnginePool`` loaded in parallel."""
    if len(devices) == 1:
        return make(replace(config, device=devices[0]) if devices[0] is not None else config)
    return EnginePool.load(config, devices, make=make)


class EngineFailure:
    """An engine that is not serving: its device and why."""

    def __init__(self, device: str, reason: str):
        self.device, self.reason = device, reason


class EnginePool:
    def __init__(self, engines: Sequence[Engine | EngineFailure]):
        if not any(isinstance(e, Engine) for e in engines):
            raise ValueError("an engine pool needs at least one loaded engine")
        self.slots: list[Engine | EngineFailure] = list(engines)
        self._in_flight = [0] * len(self.slots)
        self._lock = threading.Lock()
        self.batcher = PoolBatcher(self)
        self.load_seconds = max(e.load_seconds for e in self.slots if isinstance(e, Engine))

    @classmethod
    def load(cls, config: EngineConfig, devices: Sequence[str | None], *,
             make: Callable[[EngineConfig], Engine] = Engine) -> EnginePool:
        """Build the engines in parallel; those that fail are kept as ``EngineFailure`` (all failing raises
        the first device's error)."""
        def build(device):
            try:
                return make(replace(config, device=device))
            except Exception as exc:  # noqa: BLE001  one GPU failing leaves the others serving
                return exc

        with ThreadPoolExecutor(len(devices), thread_name_prefix="f5-worker-engine-load") as threads:
            built = list(threads.map(build, devices))
        failed = [(d, b) for d, b in zip(devices, built) if isinstance(b, BaseException)]
        if len(failed) == len(devices):
            raise failed[0][1]
        for device, exc in failed:
            event(log, "engine failed to load; the other GPUs serve", phase="engine.load", device=str(device),
                  error=f"{type(exc).__name__}: {exc}", level=logging.WARNING)
        return cls([EngineFailure(str(d), f"failed to load: {type(b).__name__}: {b}") if isinstance(b, BaseException)
                    else b for d, b in zip(devices, built)])

    # -- the engines ------------------------------------------------------------------

    @property
    def engines(self) -> list[Engine]:
        """The engines serving now (loaded, their GPU thread running), in index order."""
        return [e for e in self.slots if isinstance(e, Engine) and e.batcher.alive]

    @property
    def _first(self) -> Engine:
        live = self.engines
        return live[0] if live else next(e for e in self.slots if isinstance(e, Engine))

    def _status(self, index: int) -> dict:
        slot = self.slots[index]
        if isinstance(slot, EngineFailure):
            return {"index": index, "device": slot.device, "state": "failed", "error": slot.reason}
        entry = {"index": index, "device": slot.device,
                 "state": "serving" if slot.batcher.alive else "failed",
                 "attention": slot.attention.to_json(), "max_batch": slot.batcher.max_batch,
                 "queue": {"chunks_queued": slot.batcher.queued, "requests_in_flight": self._in_flight[index],
                           "expected_wait_s": round(slot.batcher.expected_wait_s(), 3)},
                 "pending": list(slot.pending), "load_seconds": slot.load_seconds}
        if not slot.batcher.alive:
            entry["error"] = "its GPU thread stopped"
        return entry

    def _load_of(self, index: int) -> tuple:
        engine = self.slots[index]
        return (engine.batcher.expected_wait_s(), self._in_flight[index] / engine.batcher.max_batch, index)

    def _place(self, exclude: set[int]) -> int:
        """The live engine with the least expected wait (ties: fewer requests in flight per batch slot, then
        the lowest index); counted in flight until ``_release``."""
        with self._lock:
            candidates = [i for i, e in enumerate(self.slots)
                          if isinstance(e, Engine) and e.batcher.alive and i not in exclude]
            if not candidates:
                raise Closed("no engine is serving: every GPU failed or the worker is shutting down")
            index = min(candidates, key=self._load_of)
            self._in_flight[index] += 1
            return index

    def _release(self, index: int) -> None:
        with self._lock:
            self._in_flight[index] -= 1

    # -- the engine's surface ---------------------------------------------------------

    @property
    def device(self) -> str:
        return self._first.device

    @property
    def random_weights(self) -> bool:
        return self._first.random_weights

    @property
    def attention(self) -> AttentionChoice:
        return self._first.attention

    @attention.setter
    def attention(self, choice: AttentionChoice) -> None:  # the same kernels, a new reason: every engine
        for engine in self.slots:
            if isinstance(engine, Engine):
                engine.attention = choice

    @property
    def pending(self) -> tuple[str, ...]:
        names: list[str] = []
        for engine in self.engines:
            names += [name for name in engine.pending if name not in names]
        return tuple(names)

    def info(self) -> dict:
        info = self._first.info()
        info.update(device=",".join(e.device for e in self.engines) or info["device"],
                    max_batch=self.batcher.max_batch, pending=list(self.pending), load_seconds=self.load_seconds,
                    engines=[self._status(i) for i in range(len(self.slots))])
        return info

    def reference(self, samples: np.ndarray, text: str) -> Reference:
        return self._first.reference(samples, text)

    def chunks(self, reference: Reference, text: str, speed: float) -> list[str]:
        return self._first.chunks(reference, text, speed)

    def stream(self, reference: Reference, text: str, params: SynthesisParams = SynthesisParams(),
               cancelled: Callable[[], bool] | None = None, *, first_alone: bool = False) -> Iterator[np.ndarray]:
        """``Engine.stream`` on the least loaded engine: all of this text's chunks there (one reference mel).
        An engine found closed before any audio came is passed over for the next."""
        tried: set[int] = set()
        while True:
            index = self._place(tried)
            produced = False
            try:
                for wave in self.slots[index].stream(reference, text, params, cancelled, first_alone=first_alone):
                    produced = True
                    yield wave
                return
            except Closed:
                if produced:
                    raise
                tried.add(index)
            finally:
                self._release(index)

    def synthesize(self, reference: Reference, text: str, params: SynthesisParams = SynthesisParams(),
                   cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        return whole(self.stream(reference, text, params, cancelled), params.remove_silence)

    def _each(self, fn: Callable[[Engine], object]) -> list:
        """``fn`` on every live engine at once (each waits on its own GPU thread)."""
        engines = self.engines
        with ThreadPoolExecutor(max(len(engines), 1), thread_name_prefix="f5-worker-engines") as threads:
            return list(threads.map(fn, engines))

    def warm_up(self) -> float:
        started = time.monotonic()
        self._each(Engine.warm_up)
        return round(time.monotonic() - started, 3)

    def start_background(self, cache_dir: Path | None = None) -> None:
        self._each(lambda engine: engine.start_background(cache_dir))

    def use_attention(self, choice: AttentionChoice, cache_dir: Path | None = None) -> None:
        """Every engine switches between two of its batches; tuning redone or reused per engine."""
        self._each(lambda engine: engine.use_attention(choice, cache_dir))

    def close(self, timeout: float | None = None) -> None:
        for engine in self.slots:
            if isinstance(engine, Engine):
                engine.close(timeout)


class PoolBatcher:
    """What callers read of ``engine.batcher``, over all the live engines' batchers."""

    def __init__(self, pool: EnginePool):
        self._pool = pool

    @property
    def alive(self) -> bool:
        return bool(self._pool.engines)

    @property
    def max_batch(self) -> int:
        """Chunks sampled at once across the GPUs (the worker's concurrency follows it); 1 when none serves."""
        return sum(e.batcher.max_batch for e in self._pool.engines) or 1

    @property
    def queued(self) -> int:
        return sum(e.batcher.queued for e in self._pool.engines)

    @property
    def batch_seconds(self) -> float:
        return max((e.batcher.batch_seconds for e in self._pool.engines), default=0.0)

    @property
    def batches(self) -> int:
        return sum(e.batcher.batches for e in self._pool.engines)

    def expected_wait_s(self) -> float:
        """A new request's wait: where it would be placed, the least over live engines."""
        return min((e.batcher.expected_wait_s() for e in self._pool.engines), default=0.0)

    def close(self, timeout: float | None = None, *, drain: bool = True) -> None:
        for engine in self._pool.engines:
            engine.batcher.close(timeout, drain=drain)
