"""Text and a prepared reference voice in, 24 kHz speech out, chunk by chunk.

F5-TTS decides what is said and how long it takes: ``chunk_text`` splits long text by
its rules, and each chunk is prepared as ``infer_batch_process`` prepares it (loudness
matching, pinyin, the duration estimate). Sampling and vocoding run on one GPU thread
that batches chunks of concurrent requests (``batcher``, ``sampler``). What a server
needs around it: a seed per request so a fixed seed repeats, chunks yielded as they are
done (cross-faded exactly as F5-TTS does, so streaming and whole outputs are equal),
cancellation that drops chunks not yet started, and a warm-up at start.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, TimeoutError, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import params as defaults
from ..attention_choice import SDPA, AttentionChoice
from ..log import event, get_logger, phase
from .batcher import Batcher
from .models import HOP_LENGTH, SAMPLE_RATE, ModelFiles, build_model, build_vocoder
from .graphs import GraphedByShape
from .sampler import SampleRequest, Sampler, SamplingConfig
from .text import chunk_text, convert_char_to_pinyin, list_str_to_idx, list_str_to_tensor
from .tuning import (FRAME_OFFSET_BUCKETS, TYPICAL_FRAMES, BatchChoice, TuningRecord, bucketed, choose_batch,
                     choose_frame_offset, choose_mixed_policy, measure_batches, stand_in_inputs, tuning_key)

__all__ = ["Engine", "EngineConfig", "SynthesisParams", "Reference", "Cancelled", "crossfade", "SAMPLE_RATE"]

log = get_logger("engine")
# F5-TTS's chunking budget: chars of reference text per second, times the seconds left in a ~22 s window.
WINDOW_S = 22.0
PREWARM_SPAN_FRAMES = 512  # lengths prepared ahead: +-5.5 s around a typical request (5 s reference + 10 s)
KERNELS_TIMEOUT_S = 300.0  # the Triton kernels' compile and check (H200: 4.9 s on a new volume, 0.9 s warm)
CPU_BATCH = 4  # with no GPU to measure, a small batch: the CPU gains little from batching
DEFAULT_GPU_BATCH = 8  # until measured: the best batch on the H100 and H200 (BENCHMARKS.md, ## Throughput)
TARGET_RMS = 0.1  # infer_batch_process raises quieter references to this loudness, and lowers the output back
MAX_FRAMES = 65536  # CFM.sample's cap on one sample's length
REFERENCE_MELS_KEPT = 32  # voices whose reference mel stays on the GPU (least recently used go first)
VOCODER_GRAPHS_KEPT = 16  # output lengths whose vocoder graph is kept (~20 MB each at 10 s)


class Cancelled(Exception):
    """The request was cancelled; its chunks not yet sampled are dropped from their batches."""


@dataclass(frozen=True)
class EngineConfig:
    model: str = "F5TTS_v1_Base"  # or "tiny-random"
    files: ModelFiles = ModelFiles()
    # The kernels the bootstrap verified (and measured); ``use_attention`` switches to another later.
    attention: AttentionChoice = AttentionChoice.sdpa("the default until flash-attn is verified")
    device: str | None = None  # None: cuda when available
    max_batch: int = 0  # chunks sampled together at most; 0: DEFAULT_GPU_BATCH on CUDA until measured, 4 on the CPU
    batch_window_s: float = 0.005  # how long a lone chunk waits for company
    max_batch_frames: int = 64 * 2048  # frames sampled together at most (bounds memory)
    cuda_graphs: bool = True
    # On CUDA, compile the Triton kernels (``nn.kernels``) in the background, check them against PyTorch's
    # and switch to them; False: PyTorch's kernels only (benchmarks compare the two).
    kernels: bool = True
    # Generated lengths are rounded up to a multiple of this many frames (16: 0.17 s), so requests share
    # CUDA graphs and batch as equal lengths; 0: 16 where CUDA graphs are used, else 1 (F5-TTS's exact estimate).
    frame_bucket: int = 0


@dataclass(frozen=True)
class SynthesisParams:
    speed: float = defaults.SPEED  # F5-TTS's, in one place (f5_worker.params)
    nfe_step: int = defaults.NFE_STEP
    cfg_strength: float = defaults.CFG_STRENGTH
    sway_sampling_coef: float = defaults.SWAY_SAMPLING_COEF
    cross_fade_duration: float = defaults.CROSS_FADE_DURATION
    seed: int | None = None
    remove_silence: bool = defaults.REMOVE_SILENCE


@dataclass(frozen=True)
class _Chunk:
    """One text chunk of one request, prepared as F5-TTS's ``infer_batch_process`` prepares it."""

    audio: torch.Tensor  # (1, samples) the reference, raised to TARGET_RMS when quieter
    text: torch.Tensor  # token ids of reference text + chunk text
    frames: int  # frames to sample: reference + generated
    skip: int  # frames cut from the front of the output (the reference, as F5-TTS counts it)
    voice: str  # Reference.key: chunks of one request share their reference's mel
    seed: int
    gain: float  # brings the output back to the reference's loudness
    config: SamplingConfig


@dataclass(frozen=True)
class Reference:
    audio: torch.Tensor  # (1, samples) float32 at 24 kHz, trimmed, clipped, padded
    text: str
    key: str  # sha256 of the samples and text
    rms: float  # the audio's loudness
    prompt: torch.Tensor  # the audio as the model hears it: raised to TARGET_RMS when quieter, as F5-TTS does

    @classmethod
    def of(cls, audio: torch.Tensor, text: str, key: str) -> Reference:
        """What every request with this voice needs of its audio, computed once (not per request)."""
        rms = float(torch.sqrt(torch.mean(torch.square(audio))))
        return cls(audio, text, key, rms, audio * TARGET_RMS / rms if rms < TARGET_RMS else audio)

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / SAMPLE_RATE


def crossfade(waves: Iterator[np.ndarray], fade: int) -> Iterator[np.ndarray]:
    """Join waveforms with F5-TTS's linear cross-fade, yielding as soon as samples are final.

    The overlap with the next chunk is ``min(fade, len(output so far), len(next))``,
    as in ``infer_batch_process``; the last ``fade`` samples are held back until the
    next chunk (or the end) decides them.
    """
    held: np.ndarray | None = None
    for wave in waves:
        wave = np.asarray(wave, dtype=np.float32)
        if held is None:
            out = wave
        else:
            n = min(fade, len(held), len(wave))
            if n <= 0:
                out = np.concatenate([held, wave])
            else:
                mixed = held[len(held) - n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
                out = np.concatenate([held[: len(held) - n], mixed.astype(np.float32), wave[n:]])
        cut = max(len(out) - fade, 0)
        if cut:
            yield out[:cut]
        held = out[cut:]
    if held is not None and len(held):
        yield held


class Engine:
    def __init__(self, config: EngineConfig):
        self.config = config
        started = time.monotonic()
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda"):
            with phase(log, "engine.cuda_init"):  # the driver's context: timed apart from reading weights
                torch.cuda.init()
                torch.empty(1, device=self.device)
        with phase(log, "engine.model", random_weights=config.files.checkpoint is None):
            self.model = build_model(config.model, config.files, attn_backend="torch",
                                     attn_mask_enabled=False, device=self.device)
        with phase(log, "engine.vocoder"):
            self.vocoder = build_vocoder(config.model, config.files, device=self.device)
        self.dtype = next(self.model.parameters()).dtype
        self.attention = config.attention
        self._reference_mels: OrderedDict[str, torch.Tensor] = OrderedDict()  # by voice, on the batcher's thread
        self.sampler = Sampler(self.model, backends=_sampler_backends(config.attention), cuda_graphs=config.cuda_graphs)
        # One request's vocoder from a CUDA graph per length: eager, its ~150 small kernels took 1.54 ms of GPU
        # time on the H200 against 1.30 replayed, and ~3 ms of a request (bench/results/prelude-graphs-h200.json,
        # request-timeline-h200.json). Batches of several launch the same kernels for more work: eager.
        self._vocoder_graphs = (GraphedByShape(self.vocoder.decode, kept=VOCODER_GRAPHS_KEPT, device=self.device,
                                               pool=self.sampler.graph_pool) if self.sampler.cuda_graphs else None)
        default_batch = DEFAULT_GPU_BATCH if self.device.startswith("cuda") else CPU_BATCH
        self.batcher = Batcher(self._run_batch, max_batch=config.max_batch or default_batch,
                               window_s=config.batch_window_s, max_size=config.max_batch_frames)
        if torch.device(self.device).type == "cuda" and torch.device(self.device).index is not None:
            # cuda:i (one engine of several): the GPU thread's own current device, so what it runs without
            # naming a device (graph capture, synchronize, memory statistics) runs on this GPU.
            self.batcher.call(lambda: torch.cuda.set_device(self.device))
        self.batch_choice = BatchChoice(self.batcher.max_batch, "configured" if config.max_batch else "default")
        self._background: deque[tuple[str, Iterator]] = deque()  # owned by the batcher's thread
        self.pending: tuple[str, ...] = ()  # names of the background tasks not finished yet
        self.mixed_policy = "equal-length groups" if self.sampler.split_mixed else "masked batches"
        self.frame_bucket = config.frame_bucket or (16 if self.sampler.cuda_graphs else 1)
        self.frame_offset = 0  # lengths are bucket k - frame_offset frames: measured by tuning (choose_frame_offset)
        # "pytorch" until the Triton kernels are compiled and checked in the background, then "triton";
        # "pytorch: <why>" when they are not used.
        self._kernels_decided = not (config.kernels and self.device.startswith("cuda"))
        self.kernels = ("pytorch" if not self._kernels_decided else
                        "pytorch: kernels off (EngineConfig)" if not config.kernels else "pytorch: no CUDA GPU")
        self.load_seconds = round(time.monotonic() - started, 3)
        event(log, "engine loaded", phase="engine.load", model=config.model, device=self.device,
              dtype=str(self.dtype), attention=str(config.attention), max_batch=self.batcher.max_batch,
              load_seconds=self.load_seconds)  # the worker's engine.load phase carries the duration

    @property
    def random_weights(self) -> bool:
        return self.config.files.checkpoint is None

    def info(self) -> dict:
        return {
            "model": self.config.model,
            "random_weights": self.random_weights,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "attention": self.attention.to_json(),
            "max_batch": self.batcher.max_batch,
            "max_batch_why": self.batch_choice.why,
            "mixed_lengths": self.mixed_policy,
            "kernels": self.kernels,
            "frame_bucket": self.frame_bucket,
            "frame_offset": self.frame_offset,
            "sample_rate": SAMPLE_RATE,
            "load_seconds": self.load_seconds,
            "pending": list(self.pending),
        }

    def close(self, timeout: float | None = None) -> None:
        self.batcher.close(timeout)

    # -- references ----------------------------------------------------------------

    def reference(self, samples: np.ndarray, text: str) -> Reference:
        """A reference voice from samples already prepared by ``serving.audio`` (24 kHz mono, clipped as F5-TTS does)."""
        key = hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes() + text.encode()).hexdigest()
        # F5-TTS ends the reference text with sentence punctuation and a space, so chunks start cleanly.
        text = text.strip()
        if not text.endswith(("。", ".")):
            text += "."
        text = text if text.endswith("。") else text + " "
        return Reference.of(torch.from_numpy(np.array(samples, dtype=np.float32))[None], text, key)

    # -- synthesis -----------------------------------------------------------------

    def chunks(self, reference: Reference, text: str, speed: float) -> list[str]:
        """F5-TTS's split of ``text`` for this reference (longer references leave room for less text)."""
        ref_bytes = len(reference.text.encode("utf-8"))
        max_chars = int(ref_bytes / reference.seconds * (WINDOW_S - reference.seconds) * speed)
        return chunk_text(text, max_chars=max(max_chars, 1))

    def _prepare(self, reference: Reference, piece: str, params: SynthesisParams, seed: int) -> _Chunk:
        """``infer_batch_process``'s preparation of one chunk, on the caller's thread (no GPU work)."""
        audio, rms = reference.prompt, reference.rms
        gain = rms / TARGET_RMS if rms < TARGET_RMS else 1.0
        ref_text = reference.text
        if len(ref_text[-1].encode("utf-8")) == 1:
            ref_text += " "
        speed = 0.3 if len(piece.encode("utf-8")) < 10 else params.speed
        pinyin = convert_char_to_pinyin([ref_text + piece])
        if self.model.vocab_char_map is not None:
            ids = list_str_to_idx(pinyin, self.model.vocab_char_map)[0]
        else:
            ids = list_str_to_tensor(pinyin)[0]
        skip = audio.shape[-1] // HOP_LENGTH
        duration = skip + int(skip / len(ref_text.encode("utf-8")) * len(piece.encode("utf-8")) / speed)
        reference_frames = skip + 1  # the mel spectrogram's frames (centred STFT)
        frames = max(max(ids.numel(), reference_frames) + 1, duration)
        frames = min(bucketed(frames, self.frame_bucket, self.frame_offset), MAX_FRAMES)
        config = SamplingConfig(steps=params.nfe_step, cfg_strength=params.cfg_strength,
                                sway_sampling_coef=params.sway_sampling_coef)
        return _Chunk(audio, ids, frames, skip, reference.key, seed, gain, config)

    def _run_batch(self, chunks: list[_Chunk]) -> list[np.ndarray | BaseException]:
        """On the batcher's thread: reference mels, one sampling call, then the vocoder."""
        with torch.inference_mode():
            requests = [SampleRequest(self._reference_mel(chunk), chunk.text, chunk.frames, chunk.seed)
                        for chunk in chunks]
            mels = self.sampler.sample(requests, chunks[0].config)
            outcomes: list[np.ndarray | BaseException | None] = [None] * len(chunks)
            # Chunks whose generated parts are equally long go through the vocoder together (one call, the
            # same result per chunk: it is convolutional); usually a batch is one such group.
            groups: dict[int, list[int]] = {}
            for index, (chunk, mel) in enumerate(zip(chunks, mels)):
                groups.setdefault(mel.shape[0] - chunk.skip, []).append(index)
            for indices in groups.values():
                try:
                    generated = torch.stack([mels[i][chunks[i].skip:] for i in indices]).float().transpose(1, 2)
                    gains = torch.tensor([chunks[i].gain for i in indices], device=generated.device)[:, None]
                    waves = (self._decode(generated) * gains).cpu().numpy().astype(np.float32)
                    for row, index in enumerate(indices):
                        outcomes[index] = waves[row].reshape(-1)
                except Exception as exc:  # noqa: BLE001  these chunks fail, their neighbours do not
                    for index in indices:
                        outcomes[index] = exc
        return outcomes

    def _decode(self, mel: torch.Tensor) -> torch.Tensor:
        """The vocoder: replayed from a CUDA graph for one request (``warm_up`` runs without graphs), else eager."""
        if self._vocoder_graphs is not None and self.sampler.cuda_graphs and mel.shape[0] == 1:
            return self._vocoder_graphs(mel)
        return self.vocoder.decode(mel)

    def _reference_mel(self, chunk: _Chunk) -> torch.Tensor:
        """The reference's mel spectrogram on the GPU: computed once per voice while it stays in use (a voice's
        requests, and the chunks of one, reuse it; it is ~0.1 MB)."""
        mel = self._reference_mels.pop(chunk.voice, None)
        if mel is None:
            mel = self.model.mel_spec(chunk.audio.to(self.device)).permute(0, 2, 1)[0].to(self.dtype)
            while len(self._reference_mels) >= REFERENCE_MELS_KEPT:
                self._reference_mels.popitem(last=False)
        self._reference_mels[chunk.voice] = mel
        return mel

    def _chunk_waves(self, reference: Reference, pieces: list[str], params: SynthesisParams, seed: int,
                     cancelled: Callable[[], bool] | None, first_alone: bool = False) -> Iterator[np.ndarray]:
        # All chunks are submitted at once, so a long text is sampled as one batch; or, for a listener
        # waiting on the first audio, the first chunk alone and the rest once it has started.
        chunks = [self._prepare(reference, piece, params, seed + index) for index, piece in enumerate(pieces)]
        futures: list[Future] = []
        try:
            for index, chunk in enumerate(chunks):
                if first_alone and index == 1:
                    while not (futures[0].running() or futures[0].done()) and not (cancelled and cancelled()):
                        time.sleep(0.002)
                futures.append(self.batcher.submit(chunk, key=chunk.config, size=chunk.frames))
            for index, future in enumerate(futures):
                yield _wait(future, cancelled, f"chunk {index + 1} of {len(pieces)}")
        finally:
            for future in futures:
                future.cancel()  # drops chunks not yet started: cancelled, failed or abandoned requests

    def stream(self, reference: Reference, text: str, params: SynthesisParams = SynthesisParams(),
               cancelled: Callable[[], bool] | None = None, *, first_alone: bool = False) -> Iterator[np.ndarray]:
        """Audio in pieces, in order, as each text chunk is synthesised (cross-faded).

        ``first_alone``: sample the first chunk in a batch of its own, so its audio comes out before the
        rest is done (for a listener; the whole text in one batch finishes sooner overall)."""
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        pieces = self.chunks(reference, text, params.speed)
        fade = int(params.cross_fade_duration * SAMPLE_RATE)
        yield from crossfade(self._chunk_waves(reference, pieces, params, seed, cancelled, first_alone), fade)

    def synthesize(self, reference: Reference, text: str, params: SynthesisParams = SynthesisParams(),
                   cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        return whole(self.stream(reference, text, params, cancelled), params.remove_silence)

    def warm_up(self) -> float:
        """One short synthesis, so the first request pays no library set-up, kernel loading or allocator growth.

        Run eagerly: a step graph serves one length only, and the first request's length is unknown, so
        capturing one here (~0.4 s on an H200) would only delay readiness; the graphs of likely lengths are
        captured in the background (``start_background``). Call before serving.
        """
        started = time.monotonic()
        rng = np.random.default_rng(0)
        voice = (0.1 * rng.standard_normal(SAMPLE_RATE * 2)).astype(np.float32)
        graphs, self.sampler.cuda_graphs = self.sampler.cuda_graphs, False
        try:
            self.synthesize(self.reference(voice, "Warm up."), "Warming up the worker.",
                            SynthesisParams(nfe_step=2, seed=0))
        finally:
            self.sampler.cuda_graphs = graphs
        seconds = round(time.monotonic() - started, 3)
        event(log, "engine warmed up", phase="engine.warm_up", duration_ms=seconds * 1000)
        return seconds

    # -- background work: what only makes the worker faster ----------------------------

    def start_background(self, cache_dir: Path | None = None) -> None:
        """Tune and prepare step graphs on the GPU thread whenever no request waits; serve meanwhile.

        What an earlier start on the same kind of machine measured (kept in ``cache_dir``) applies at
        once; otherwise the worker serves with the default batch while it measures ("tuning" in
        ``pending``), then captures the step graphs of likely lengths ("graphs"). A request waits at
        most for the one measurement or capture under way. Call from any thread but the batcher's.
        """
        tasks: list[tuple[str, Iterator]] = []
        if not self._kernels_decided:  # first: the step times tuning measures depend on the kernels
            tasks.append(("kernels", self._enable_kernels()))
        if self.device.startswith("cuda"):
            tasks.append(("tuning", self._tune(cache_dir)))
        if self.sampler.cuda_graphs:
            tasks.append(("graphs", self._prewarm()))

        def schedule():  # on the batcher's thread: never while a piece of older background work runs
            self._background = deque(tasks)
            self.pending = tuple(name for name, _ in tasks)

        self.batcher.call(schedule)
        self.batcher.set_idle(self._background_step if tasks else None)

    def use_attention(self, choice: AttentionChoice, cache_dir: Path | None = None) -> None:
        """Run later batches with ``choice``: switched between batches, never inside one. Step graphs
        captured for the old kernels are dropped, and tuning (keyed by the kernels) is redone or reused."""
        started = time.monotonic()

        def switch():
            self.sampler.set_backends(_sampler_backends(choice))
            self.attention = choice

        self.batcher.call(switch)
        event(log, "attention switched", phase="engine.switch", attention=str(choice),
              duration_ms=round((time.monotonic() - started) * 1000, 1))
        self.start_background(cache_dir)

    def _background_step(self) -> bool:
        """One piece of background work (the batcher's idle hook); False when none is left."""
        while self._background:
            name, task = self._background[0]
            try:
                next(task)
                return True
            except StopIteration:
                pass
            except Exception as exc:  # noqa: BLE001  background work is optional; serving is not
                event(log, "background work stopped", phase=f"engine.{name}", error=f"{type(exc).__name__}: {exc}",
                      level=logging.WARNING)
            self._background.popleft()
            self.pending = tuple(n for n, _ in self._background)
        return False

    def enable_kernels(self) -> str:
        """Compile, check and switch to the Triton kernels now, and say which kernels run (benchmarks; a
        serving worker does this in the background, ``start_background``)."""
        if not self._kernels_decided:
            started = time.monotonic()
            future = self._check_kernels()
            wait([future])
            self.batcher.call(lambda: self._use_kernels(future, started))
        return self.kernels

    def _enable_kernels(self) -> Iterator[None]:
        started = time.monotonic()
        future = self._check_kernels()
        while not future.done():
            if time.monotonic() - started > KERNELS_TIMEOUT_S:  # a stuck compiler must not hold tuning back
                future = Future()
                future.set_exception(TimeoutError(f"compiling and checking took over {KERNELS_TIMEOUT_S:g} s"))
                break
            yield  # a request that arrives meanwhile is served with PyTorch's kernels
            wait([future], timeout=0.02)
        self._use_kernels(future, started)

    def _check_kernels(self) -> Future:
        """``kernels.check`` (compiles each kernel, compares it with PyTorch's computation) on a thread of its own."""
        future: Future = Future()

        def compile_and_check():
            try:
                if torch.device(self.device).index is not None:  # cuda:i: compile for (and check on) that GPU
                    torch.cuda.set_device(self.device)
                from .nn import kernels

                future.set_result(kernels.check(self.model.transformer))
            except BaseException as exc:  # noqa: BLE001  reported by _use_kernels, on the GPU thread
                future.set_exception(exc)

        threading.Thread(target=compile_and_check, name="f5-worker-kernels", daemon=True).start()
        return future

    def _use_kernels(self, checked: Future, started: float) -> None:
        """On the GPU thread, between batches: the checked kernels from the next batch on, or why not."""
        self._kernels_decided = True
        took = round((time.monotonic() - started) * 1000, 1)
        try:
            differences = checked.result()
        except Exception as exc:  # noqa: BLE001  no Triton, no compiler, a mismatch: serve on PyTorch's kernels
            self.kernels = f"pytorch: {type(exc).__name__}: {str(exc)[:300]}"
            event(log, "kernels not used", phase="engine.kernels", why=self.kernels, duration_ms=took,
                  level=logging.WARNING)
            return
        self.model.transformer.use_kernels(True)
        self.sampler.forget_graphs()  # they replay the kernels they captured
        self.kernels = "triton"
        event(log, "kernels in use", phase="engine.kernels", duration_ms=took,
              max_rel_diff={name: float(f"{diff:.3g}") for name, diff in differences.items()})

    def _tuning_key(self) -> str:
        from .. import __version__

        return tuning_key(gpu=torch.cuda.get_device_name(self.device),
                          memory=torch.cuda.get_device_properties(self.device).total_memory,
                          torch=torch.__version__, worker=__version__, model=self.config.model,
                          single=self.attention.single, batch=self.attention.batch,
                          graphs=self.sampler.cuda_graphs, bucket=self.frame_bucket, kernels=self.kernels,
                          offset_buckets=FRAME_OFFSET_BUCKETS)

    def _tune(self, cache_dir: Path | None) -> Iterator[None]:
        """What an earlier start measured on this kind of machine, or (none kept) measure how to run requests
        of different lengths and (max_batch auto) how many to batch."""
        path = cache_dir / f"{self._tuning_key()}.json" if cache_dir else None
        record = TuningRecord.load(path) if path else None
        if record is not None:
            self._apply_tuning(record, reused=True)
            return
        started = time.monotonic()
        cond, text = stand_in_inputs(self.model.num_channels, self.device, self.dtype)
        offset, offset_why = ((yield from choose_frame_offset(self.sampler, cond, text, self.frame_bucket))
                              if self.sampler.cuda_graphs else (0, "no CUDA graphs: any length"))
        self.frame_offset = offset  # from the next request on; the batches below are measured at these lengths
        policy = yield from choose_mixed_policy(self.sampler, cond, text)
        timings = yield from measure_batches(self.sampler, cond, text, mixed=not self.sampler.split_mixed,
                                             frames=bucketed(TYPICAL_FRAMES, self.frame_bucket, offset))
        free, _total = torch.cuda.mem_get_info(self.device)
        choice = choose_batch(timings, free + torch.cuda.memory_reserved(self.device))
        record = TuningRecord(choice.batch, choice.why, self.sampler.split_mixed, policy, offset, offset_why)
        if path:
            try:
                record.save(path)
            except OSError as exc:  # a read-only or full volume: measure again next start
                event(log, "tuning not kept", phase="engine.tune", error=str(exc), level=logging.WARNING)
        self._apply_tuning(record, reused=False, started=started)

    def _apply_tuning(self, record: TuningRecord, *, reused: bool, started: float | None = None) -> None:
        self.sampler.split_mixed, self.mixed_policy = record.split_mixed, record.mixed_policy
        self.frame_offset = record.frame_offset
        if not self.config.max_batch:
            self.batch_choice = BatchChoice(record.batch, record.batch_why)
            self.batcher.max_batch = record.batch
        event(log, "engine tuned", phase="engine.tune", max_batch=self.batcher.max_batch, why=self.batch_choice.why,
              mixed_lengths=self.mixed_policy, frame_offset=self.frame_offset, frame_offset_why=record.frame_offset_why,
              reused=reused,
              **({"duration_ms": round((time.monotonic() - started) * 1000, 1)} if started else {}))

    def prewarm_lengths(self) -> list[int]:
        """The single-request lengths whose step graphs are captured ahead, nearest a typical request first.

        A length seen for the first time costs ~0.4 s more on an H100 (an eager step, cuDNN plans, the
        capture: BENCHMARKS.md); capturing them while idle moves that cost off the first requests.
        """
        if not self.sampler.cuda_graphs:
            return []
        bucket = self.frame_bucket
        centre = round(TYPICAL_FRAMES / bucket) * bucket - self.frame_offset
        return sorted(range(centre - PREWARM_SPAN_FRAMES, centre + PREWARM_SPAN_FRAMES + 1, bucket),
                      key=lambda frames: abs(frames - centre))[: self.sampler.max_graphs // 2]

    def _prewarm(self) -> Iterator[None]:
        lengths = self.prewarm_lengths()
        started = time.monotonic()
        inputs = stand_in_inputs(self.model.num_channels, self.device, self.dtype)
        for frames in lengths:
            if not self.sampler.has_graph(1, frames, SynthesisParams.cfg_strength):
                self.sampler.sample([SampleRequest(inputs[0], inputs[1], frames, 0)],
                                    SamplingConfig(steps=1, cfg_strength=SynthesisParams.cfg_strength))
            yield
        event(log, "step graphs prepared", phase="engine.prewarm", lengths=len(lengths),
              duration_ms=round((time.monotonic() - started) * 1000, 1))

    def params_json(self, params: SynthesisParams) -> dict:
        return asdict(params)


def whole(waves: Iterable[np.ndarray], remove_silence: bool = False) -> np.ndarray:
    """Streamed pieces as one waveform, with F5-TTS's long silences removed when asked."""
    audio = np.concatenate(list(waves) or [np.zeros(0, np.float32)])
    return _remove_long_silences(audio) if remove_silence else audio


def _sampler_backends(choice: AttentionChoice) -> dict[str, str]:
    """The sampler's switches, in F5-TTS's names for the kernels ("torch" is SDPA; "fa4" is ours)."""
    return {mode: "torch" if backend == SDPA else backend
            for mode, backend in (("single", choice.single), ("batch", choice.batch))}


def _wait(future: Future, cancelled: Callable[[], bool] | None, what: str, poll_s: float = 0.05):
    """The future's result, raising ``Cancelled`` as soon as the request is cancelled."""
    while True:
        if cancelled and cancelled():
            raise Cancelled(f"cancelled at {what}")
        try:
            return future.result(timeout=poll_s if cancelled else None)
        except TimeoutError:
            continue
        except CancelledError:
            raise Cancelled(f"cancelled at {what}") from None


def _remove_long_silences(audio: np.ndarray) -> np.ndarray:
    """F5-TTS's remove_silence_for_generated_wav: drop silences over 1 s (below -50 dBFS), keep 500 ms of each."""
    from ..serving.refclip import remove_long_silences  # numpy only: the one silence algorithm

    return remove_long_silences(audio, SAMPLE_RATE)
