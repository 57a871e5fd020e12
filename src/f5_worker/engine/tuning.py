"""How to batch requests on this GPU, how many (and so how many jobs to take at once), and at which lengths.

Measured at start, not guessed from a table: first whether requests of different lengths run
faster as one masked batch or as equal-length groups; then a few sampler steps for batches of
1, 2, 4 ... requests around a typical request (5 s reference + 10 s of speech), as batches
will be run. The batch size chosen is the smallest that reaches
``share`` of the best throughput measured (bigger batches add latency for little gain),
within ``memory_share`` of the GPU's free memory.

Before those, which lengths to round requests up to: CUDA graphs need lengths shared by many requests, so the
engine rounds them up to a bucket of 16 frames, and cuBLAS and cuDNN choose their kernels by shape, some
shapes well, some badly (on the H200, past 1408 frames the multiples of 8 ran a step ~2.5% slower than their
neighbours: bench/results/frame-lengths-sweeps-h200.json), so the bucket's phase is measured, not assumed
(``choose_frame_offset``): lengths are 16 k - offset frames.

The outcome is kept on the volume (``TuningRecord``), keyed by everything that could change it (GPU,
torch, worker version, model, attention backends), so later cold starts on the same kind of machine
reuse it instead of measuring again (~8 s on an H100). Measuring never delays a request by more
than one measurement: the functions are generators the GPU thread steps through while it is idle.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..log import event, get_logger

__all__ = ["BatchTiming", "BatchChoice", "choose_batch", "measure_batches", "choose_mixed_policy", "choose_frame_offset",
           "bucketed", "TuningRecord", "tuning_key"]

log = get_logger("engine.tuning")
TYPICAL_FRAMES = 1406  # 5 s reference + 10 s of speech at 24 kHz / 256
FRAME_OFFSET_BUCKETS = 4  # buckets around a typical request whose phases choose_frame_offset measures
CANDIDATES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class BatchTiming:
    batch: int
    seconds_per_step: float
    peak_bytes: int  # GPU memory at the peak of the batch, above what was allocated before it

    @property
    def requests_per_second(self) -> float:
        return self.batch / self.seconds_per_step


@dataclass(frozen=True)
class BatchChoice:
    batch: int
    why: str
    timings: tuple[BatchTiming, ...] = ()

    def to_json(self) -> dict:
        return {"batch": self.batch, "why": self.why, "timings": [asdict(t) for t in self.timings]}


@dataclass(frozen=True)
class TuningRecord:
    """What start-up measured, as kept on the volume."""

    batch: int
    batch_why: str
    split_mixed: bool
    mixed_policy: str
    frame_offset: int  # lengths are rounded up to bucket k - frame_offset (``bucketed``)
    frame_offset_why: str

    def save(self, path: Path) -> None:
        from ..fsutil import write_json_atomic

        write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> TuningRecord | None:
        """The record at ``path``; None when absent or unreadable (then the worker measures again)."""
        try:
            data = json.loads(path.read_text())
            record = cls(batch=int(data["batch"]), batch_why=str(data["batch_why"]),
                         split_mixed=bool(data["split_mixed"]), mixed_policy=str(data["mixed_policy"]),
                         frame_offset=int(data["frame_offset"]), frame_offset_why=str(data["frame_offset_why"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # (an older worker's record has no frame offset: measured again)
        return record if record.batch >= 1 and record.frame_offset >= 0 else None


def tuning_key(**facts) -> str:
    """A file-name-safe digest of what the measurements depend on."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def choose_batch(timings: list[BatchTiming], free_bytes: int, *, share: float = 0.9,
                 memory_share: float = 0.7) -> BatchChoice:
    """The smallest measured batch within ``share`` of the best throughput that fits in memory."""
    fits = [t for t in timings if t.peak_bytes <= memory_share * free_bytes]
    if not fits:
        return BatchChoice(1, "no measured batch fits in memory: one request at a time", tuple(timings))
    best = max(t.requests_per_second for t in fits)
    chosen = min((t for t in fits if t.requests_per_second >= share * best), key=lambda t: t.batch)
    why = (f"batch {chosen.batch}: {chosen.requests_per_second:.1f} requests/s per step, "
           f"{chosen.requests_per_second / best:.0%} of the best measured ({best:.1f})")
    return BatchChoice(chosen.batch, why, tuple(timings))


def stand_in_inputs(n_mels: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference mel and token ids shaped like a typical request's (5 s, 160 tokens), for measuring."""
    return torch.randn(469, n_mels, device=device, dtype=dtype), torch.randint(1, 100, (160,))


def bucketed(frames: int, bucket: int, offset: int = 0) -> int:
    """The length a request of ``frames`` runs at: rounded up to bucket k - offset (0 <= offset < bucket)."""
    return -(-(frames + offset) // bucket) * bucket - offset


def _around_typical(cond, text, batch: int, spread: float, frames: int = TYPICAL_FRAMES) -> list:
    """``batch`` requests with lengths spread evenly over +-spread/2 around ``frames`` (a typical request's)."""
    from .sampler import SampleRequest

    return [SampleRequest(cond, text, int(frames * (1 - spread / 2 + spread * i / max(batch - 1, 1))), i)
            for i in range(batch)]


def _median_ms_per_step(sampler, requests: list, config, runs: int) -> float:
    """The median of ``runs`` timed ``sampler.sample`` calls, in ms per step (its graphs already captured)."""
    times = []
    for _ in range(runs):
        torch.cuda.synchronize(sampler.device)
        began = time.perf_counter()
        sampler.sample(requests, config)
        torch.cuda.synchronize(sampler.device)
        times.append((time.perf_counter() - began) * 1000 / config.steps)
    return sorted(times)[len(times) // 2]


def choose_frame_offset(sampler, cond: torch.Tensor, text: torch.Tensor, bucket: int, *,
                        buckets: int = FRAME_OFFSET_BUCKETS, steps: int = 4, runs: int = 3) -> Iterator[None]:
    """Time a request's steps at each even phase of ``buckets`` neighbouring buckets around a typical request
    (bucket k - offset for offset 0, 2, ... bucket - 2), from CUDA graphs as served, and return (offset, why)
    of the phase fastest over them all: lengths are then rounded up to bucket k - offset (``bucketed``).

    Several buckets, because which lengths are slow depends on the block of lengths: on the H200 every length
    from 1393 to 1408 frames ran a step in 3.41-3.46 ms while from 1410 on the multiples of 8 took ~2.5% longer
    than their neighbours (cuBLAS picks other tiles): one bucket's fastest phase was noise elsewhere
    (BENCHMARKS.md, "A step's time by length"). A generator (``yield from``), as ``measure_batches``."""
    from .sampler import SampleRequest, SamplingConfig

    tops = [bucketed(TYPICAL_FRAMES, bucket) + bucket * j for j in range(-1, buckets - 1)]
    config = SamplingConfig(steps=steps)
    ms: dict[int, float] = {}
    for offset in range(0, bucket, 2) if bucket > 1 else (0,):
        ms[offset] = 0.0
        for top in tops:
            requests = [SampleRequest(cond, text, top - offset, 0)]
            sampler.sample(requests, config)  # capture, kernel selection
            yield
            ms[offset] += _median_ms_per_step(sampler, requests, config, runs) / len(tops)
            yield
    offset, slowest = min(ms, key=ms.get), max(ms, key=ms.get)
    for other in ms.keys() - {offset}:  # lengths no request will run at now: their graphs' memory goes back
        for top in tops:
            sampler.forget_graph(1, top - other, config.cfg_strength)
    why = (f"lengths {bucket} k - {offset}: {ms[offset]:.2f} ms per step on average, against {ms[slowest]:.2f} at "
           f"{bucket} k - {slowest} (the even phases of {len(tops)} buckets, {tops[0] - bucket + 1}-{tops[-1]} frames)")
    event(log, "request lengths chosen", phase="engine.tune", frame_offset=offset, why=why,
          ms_per_step={o: round(v, 3) for o, v in ms.items()})
    return offset, why


def measure_batches(sampler, cond: torch.Tensor, text: torch.Tensor, *, mixed: bool, steps: int = 2,
                    candidates: tuple[int, ...] = CANDIDATES, limit_s: float = 20.0,
                    frames: int = TYPICAL_FRAMES) -> Iterator[None]:
    """Time ``steps`` sampler steps per candidate batch size, on the sampler's device (run it on the GPU thread).

    A generator: it yields after each candidate, so the GPU thread can serve a request between two
    measurements, and returns the timings (``yield from``). ``mixed``: requests of different lengths (for
    masked batches); else of one length (what batches hold when the sampler splits mixed lengths).
    """
    from .sampler import SamplingConfig

    config = SamplingConfig(steps=steps)
    timings: list[BatchTiming] = []
    spent = 0.0
    for batch in candidates:
        requests = _around_typical(cond, text, batch, spread=0.4 if mixed else 0.0, frames=frames)
        began = time.monotonic()
        try:
            sampler.sample(requests, config)  # kernel selection, allocator growth, graph capture
            torch.cuda.synchronize(sampler.device)
            base = torch.cuda.memory_allocated(sampler.device)
            torch.cuda.reset_peak_memory_stats(sampler.device)
            timed = time.perf_counter()
            sampler.sample(requests, config)
            torch.cuda.synchronize(sampler.device)
            seconds = (time.perf_counter() - timed) / steps
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        timings.append(BatchTiming(batch, seconds, torch.cuda.max_memory_allocated(sampler.device) - base))
        event(log, "batch measured", phase="engine.tune", batch=batch, ms_per_step=round(seconds * 1000, 2),
              peak_mib=round(timings[-1].peak_bytes / 2**20, 1))
        spent += time.monotonic() - began  # time on the GPU thread, not time spent waiting for a turn
        if spent > limit_s:
            break
        yield
    return timings


def choose_mixed_policy(sampler, cond: torch.Tensor, text: torch.Tensor, *, batch: int = 8,
                        steps: int = 2) -> Iterator[None]:
    """Time one batch of requests of different lengths run masked, and run as equal-length groups
    (CUDA graphs); leave the sampler on the faster way and return why (``yield from``: it yields
    between measurements, as ``measure_batches`` does)."""
    from .sampler import SamplingConfig

    if not sampler.cuda_graphs:
        sampler.split_mixed = False
        return "masked batches: no CUDA graphs on this device"
    config = SamplingConfig(steps=steps)
    requests = _around_typical(cond, text, batch, spread=0.4)
    seconds = {}
    for split in (False, True):
        sampler.split_mixed = split
        sampler.sample(requests, config)  # graph capture, kernel selection
        yield
        sampler.split_mixed = split  # a request served in between may have seen the other setting: set it again
        torch.cuda.synchronize(sampler.device)
        began = time.perf_counter()
        sampler.sample(requests, config)
        torch.cuda.synchronize(sampler.device)
        seconds[split] = time.perf_counter() - began
        yield
    sampler.split_mixed = seconds[True] < seconds[False]
    why = (f"{batch} requests of different lengths: {seconds[False] * 1000 / steps:.1f} ms per step masked "
           f"({sampler.backends['batch']}), {seconds[True] * 1000 / steps:.1f} ms as equal-length groups")
    event(log, "mixed-length policy chosen", phase="engine.tune", split_mixed=sampler.split_mixed, why=why)
    return ("equal-length groups: " if sampler.split_mixed else "masked batches: ") + why
