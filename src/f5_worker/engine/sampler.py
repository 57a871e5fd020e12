"""F5-TTS's flow-matching sampler, for a batch of independent requests.

``CFM.sample`` integrates the DiT's velocity field with Euler steps (EPSS timesteps, sway
sampling, classifier-free guidance). This module does the same arithmetic with the worker's own
modules (``nn``), and changes what a server needs changed:

- each request brings its own seed: its noise depends only on its seed and its length, so a
  request gets the same starting noise alone or in any batch (``CFM.sample`` takes one seed
  per batch and reseeds the global generator);
- requests of one length need no attention mask and run the fastest unmasked kernel; requests
  of different lengths run masked, with the backend verified best for masks (variable-length
  flash attention, or masked SDPA);
- on CUDA, an unmasked step is replayed from a CUDA graph captured once per shape: a DiT step
  is ~1300 small kernels, and launching them from Python costs more than running them. With
  graphs, requests of different lengths can also run as groups of equal length (``split_mixed``)
  instead of one masked batch; the engine measures which is faster on its GPU at start.

``tests/engine/test_sampler.py`` holds it equal to ``CFM.sample`` for one request.
"""

from __future__ import annotations

import types
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .. import params
from . import graphs
from .nn import BACKENDS, conv_position_embedding

__all__ = ["SampleRequest", "SamplingConfig", "Sampler", "timesteps", "get_epss_timesteps", "lens_to_mask",
           "initial_noise", "velocity", "conv_position_embedding"]

SCHEDULES_KEPT = 8  # (steps, sway) schedules whose per-step conditioning stays on the device

# F5-TTS's Empirically Pruned Step Sampling: for these step counts, the steps (in 32nds) it keeps.
EPSS_STEPS = {
    5: (0, 2, 4, 8, 16, 32),
    6: (0, 2, 4, 6, 8, 16, 32),
    7: (0, 2, 4, 6, 8, 16, 24, 32),
    10: (0, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32),
    12: (0, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32),
}


@dataclass(frozen=True)
class SampleRequest:
    cond: torch.Tensor  # (reference frames, n_mels): the reference's mel, in the model's dtype and device
    text: torch.Tensor  # (tokens,) long: F5-TTS token ids of reference text + text to speak
    frames: int  # frames to sample in all: reference + generated
    seed: int

    @property
    def reference_frames(self) -> int:
        return self.cond.shape[0]


@dataclass(frozen=True)
class SamplingConfig:
    """What must be equal for requests to share a batch."""

    steps: int = params.NFE_STEP
    cfg_strength: float = params.CFG_STRENGTH
    sway_sampling_coef: float | None = params.SWAY_SAMPLING_COEF


def get_epss_timesteps(n: int, device, dtype) -> torch.Tensor:
    """F5-TTS's time points for ``n`` steps: EPSS's for the step counts it has them for, else uniform."""
    if n not in EPSS_STEPS:
        return torch.linspace(0, 1, n + 1, device=device, dtype=dtype)
    return 1 / 32 * torch.tensor(EPSS_STEPS[n], device=device, dtype=dtype)


def timesteps(config: SamplingConfig, device, dtype) -> torch.Tensor:
    """F5-TTS's schedule: EPSS timesteps for low step counts, else uniform, then sway sampling."""
    t = get_epss_timesteps(config.steps, device=device, dtype=dtype)
    if config.sway_sampling_coef is not None:
        t = t + config.sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
    return t


def lens_to_mask(lengths: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """(batch,) lengths -> (batch, length) mask, True inside each length (length: the longest by default)."""
    if length is None:
        length = lengths.amax()
    return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]


def initial_noise(request: SampleRequest, n_mels: int, device, dtype) -> torch.Tensor:
    """The request's starting noise: a function of its seed and length only (as ``CFM.sample(seed=...)`` draws it)."""
    generator = torch.Generator(device=device).manual_seed(request.seed)
    return torch.randn(request.frames, n_mels, device=device, dtype=dtype, generator=generator)


def velocity(dit, x, cond, text_cond, text_uncond, time, mask, cfg_strength, conditioning=None):
    """The guided flow at ``time`` (``DiT.forward``); a module-level name, so a benchmark can wrap it."""
    return dit(x, cond, text_cond, text_uncond, time, mask, cfg_strength, conditioning=conditioning)


def flow_rows(dit, inputs, conditioning, rope):
    """What a step graph runs of the model (``DiT.flow_rows``, no mask); a module-level name, as ``velocity``."""
    return dit.flow_rows(inputs, conditioning, None, rope)


def euler_step_(dit, x, out, dt, cfg_strength: float) -> None:
    """``x += dt * guided velocity`` from the model's rows ``out``: one Triton kernel while the model uses them."""
    if dit.kernels is not None and cfg_strength > 1e-5:
        dit.kernels.guided_euler_(x, out, dt, cfg_strength)
    else:
        x.add_(dt * dit.guide(out, cfg_strength))


class _StepInputs:
    """What every step graph reads of the schedule being sampled, on the device: each step's time conditioning
    and size, and which step comes next (each replay advances it), so the replays of one batch run back to
    back with no copy between them. Measured on the H200 (bench/probes/request_timeline.py, one request): the
    32 replays took 118.6 ms, against 120.4 ms with two copies before each (runs on two machines); the ~17 ms
    of GPU idle time in a request's span did not change, so those copies were not its cause."""

    def __init__(self, steps: int, width: int, dtype, device):
        self.conditionings = torch.zeros(steps, width, device=device, dtype=dtype)
        self.sizes = torch.zeros(steps, device=device, dtype=dtype)
        self.index = torch.zeros(1, device=device, dtype=torch.long)
        self.loaded: tuple | None = None

    @property
    def capacity(self) -> int:
        return self.sizes.shape[0]

    def load(self, key: tuple, t: torch.Tensor, conditionings: torch.Tensor) -> None:
        if self.loaded != key:
            self.conditionings[: len(conditionings)].copy_(conditionings)
            self.sizes[: len(t) - 1].copy_(t[1:] - t[:-1])
            self.loaded = key

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's conditioning (1, width) and size (1,), read on the device; then the next step's index."""
        conditioning = self.conditionings.index_select(0, self.index)
        size = self.sizes.index_select(0, self.index)
        self.index.add_(1).remainder_(self.capacity)  # (wraps: a benchmark may replay a graph any number of times)
        return conditioning, size


class _StepGraph:
    """A batch's sampling for one (batch, length) shape, as two CUDA graphs: ``prelude`` embeds the text into
    the model's input rows (``DiT.flow_inputs``: x, prompt and text side by side, the unconditional rows too),
    ``graph`` is one Euler step, ``x += dt * velocity(x, t)``, with t and dt from the sampler's ``_StepInputs``.
    What does not change between steps (the prompt, the text, the rotary angles) is laid out once per batch,
    not concatenated again in every step."""

    def __init__(self, dit, step_inputs: _StepInputs, batch: int, frames: int, n_mels: int, cfg_strength: float,
                 dtype, device, pool):
        guided = cfg_strength > 1e-5
        rows = 2 * batch if guided else batch
        self.x = torch.zeros(batch, frames, n_mels, device=device, dtype=dtype)
        # [x | prompt | text] per row; the unconditional rows' prompt stays zero
        self.inputs = torch.zeros(rows, frames, 2 * n_mels + dit.text_embed.text_dim, device=device, dtype=dtype)
        self.text = torch.zeros(batch, frames, device=device, dtype=torch.long)  # token ids, -1 padded
        self.rope = dit.rotary_embed.angles(frames, dtype)
        self.step_inputs = step_inputs
        self.n_mels = n_mels

        def prelude():
            self.inputs[:, :, 2 * n_mels:] = dit.text_embed.rows(self.text, frames, guided)

        def step():
            conditioning, dt = step_inputs.step()
            dit.set_flow_x(self.inputs, self.x)
            euler_step_(dit, self.x, flow_rows(dit, self.inputs, conditioning, self.rope), dt, cfg_strength)

        self.prelude, self.graph = graphs.capture((prelude, step), device, pool)

    def run(self, x, cond, text, steps: int) -> torch.Tensor:
        """The first ``steps`` steps of the loaded schedule from x, (batch, frames, n_mels), with the audio prompt
        ``cond`` and the token ids ``text`` (batch, frames), -1 padded; returns the last x."""
        batch, n_mels = self.x.shape[0], self.n_mels
        self.x.copy_(x), self.text.copy_(text)
        self.inputs[:batch, :, n_mels:2 * n_mels].copy_(cond)
        self.prelude.replay()
        self.step_inputs.index.zero_()
        for _ in range(steps):
            self.graph.replay()
        return self.x.clone()


class Sampler:
    """Samples mel spectrograms for batches of requests with one model (``nn.F5TTS``).

    ``backends`` maps "single" (requests of one length, no mask) and "batch" (mixed lengths, masked)
    to an attention backend, "torch" (SDPA), "flash_attn" or "fa4"; ``set_backends`` changes them. Not
    thread-safe: one thread (the batcher's) owns it.
    """

    def __init__(self, model, *, backends: Mapping[str, str] | None = None, cuda_graphs: bool = True,
                 max_graphs: int | None = None):
        self.model = model
        self.dit = model.transformer
        self._backends = {"single": "torch", "batch": "torch"}
        self._set(backends or {})
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.n_mels = model.num_channels
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        if max_graphs is None and self.cuda_graphs:
            # A single-request graph holds ~64 MiB of GPU memory on the H100 (bench/results/
            # new-lengths-prewarmed-h100.json: 64 graphs, 4 GiB): keep them within a tenth of the GPU.
            total = torch.cuda.get_device_properties(self.device).total_memory
            max_graphs = max(8, min(128, total // 10 // (64 * 2**20)))
        self.max_graphs = max_graphs or 0
        self._graphs: OrderedDict[tuple, _StepGraph] = OrderedDict()
        self._eager_shapes: set[tuple] = set()  # (batch, frames, cfg) whose capture failed: run eagerly
        self._schedules: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()  # see _schedule
        self._step_inputs: _StepInputs | None = None  # what the step graphs read (_step_inputs_for)
        self.graph_pool = graphs.GraphPool() if self.cuda_graphs else None  # (the vocoder's graphs too)
        self.split_mixed = False  # requests of different lengths: one masked batch, or equal-length groups

    @property
    def backends(self) -> Mapping[str, str]:
        """The attention backend per mode, read-only: change it with ``set_backends``."""
        return types.MappingProxyType(self._backends)

    @backends.setter
    def backends(self, backends: Mapping[str, str]) -> None:
        self.set_backends(backends)

    def set_backends(self, backends: Mapping[str, str]) -> None:
        """Use other attention kernels from the next batch on ("single" and/or "batch" to "torch",
        "flash_attn" or "fa4"). The step graphs captured with the old kernels are dropped: a graph replays the
        kernels it recorded, whatever the modules are set to now."""
        self._set(backends)
        self.forget_graphs()

    def forget_graphs(self) -> None:
        """Drop every captured step graph: a graph replays the kernels it recorded, so after the model's
        kernels change (attention backend, ``DiT.use_kernels``) each shape is captured again, those whose
        capture failed included."""
        self._graphs.clear()
        self._eager_shapes.clear()

    def _set(self, backends: Mapping[str, str]) -> None:
        for mode, backend in backends.items():
            if mode not in self._backends or backend not in BACKENDS:
                raise ValueError(f"attention backend {mode}={backend!r}: modes are single and batch, "
                                 f"backends {', '.join(BACKENDS)}")
        self._backends = {**self._backends, **backends}

    @torch.inference_mode()
    def sample(self, requests: list[SampleRequest], config: SamplingConfig) -> list[torch.Tensor]:
        """Each request's mel, (frames, n_mels), with its reference frames restored as ``CFM.sample`` returns them."""
        if not requests:
            return []
        if self.split_mixed and len({r.frames for r in requests}) > 1:
            mels: list = [None] * len(requests)
            for frames in sorted({r.frames for r in requests}):
                group = [i for i, r in enumerate(requests) if r.frames == frames]
                for i, mel in zip(group, self.sample([requests[i] for i in group], config)):
                    mels[i] = mel
            return mels
        device, dtype = self.device, self.dtype
        lengths = [r.frames for r in requests]
        frames = max(lengths)
        batch = len(requests)
        same_length = len(set(lengths)) == 1
        lens = None if same_length else torch.tensor(lengths, device=device)  # (a copy to the GPU: only when needed)
        mask = None if lens is None else lens_to_mask(lens)

        cond = torch.zeros(batch, frames, self.n_mels, device=device, dtype=dtype)
        cond_mask = torch.zeros(batch, frames, 1, device=device, dtype=torch.bool)
        x = torch.zeros(batch, frames, self.n_mels, device=device, dtype=dtype)
        text = torch.full((batch, frames), -1, dtype=torch.long)  # (the text embedding cuts what is longer)
        for i, r in enumerate(requests):
            cond[i, : r.reference_frames] = r.cond.to(device=device, dtype=dtype)
            cond_mask[i, : r.reference_frames] = True
            x[i, : r.frames] = initial_noise(r, self.n_mels, device, dtype)
            tokens = r.text[:frames]
            text[i, : tokens.numel()] = tokens
        text = text.to(device)

        self.dit.set_attention(self._backends["batch" if mask is not None else "single"], masked=mask is not None)
        t, conditionings = self._schedule(config)

        graph = None
        if mask is None and self.cuda_graphs:
            inputs = self._step_inputs_for(len(t) - 1)  # (first: a longer schedule forgets the graphs)
            graph = self._graph(batch, frames, config.cfg_strength)
        if graph is not None:
            inputs.load((config.steps, config.sway_sampling_coef), t, conditionings)
            x = graph.run(x, cond, text, len(t) - 1)
        else:
            text_cond, text_uncond = self.dit.text_embed.both(text, frames if mask is None else lens)
            for i in range(len(t) - 1):
                v = velocity(self.dit, x, cond, text_cond, text_uncond, t[i], mask, config.cfg_strength,
                             conditioning=conditionings[i:i + 1])
                x = x + (t[i + 1] - t[i]) * v
        out = torch.where(cond_mask, cond, x)
        return [out[i, : r.frames] for i, r in enumerate(requests)]

    def _schedule(self, config: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """The time points of ``config``'s schedule and each step's ``time_conditioning``: the same for every
        request of that schedule, so computed once (each row alone, as a step would compute it)."""
        key = (config.steps, config.sway_sampling_coef)
        schedule = self._schedules.pop(key, None)
        if schedule is None:
            t = timesteps(config, self.device, self.dtype)
            schedule = (t, torch.cat([self.dit.time_conditioning(t[i].reshape(1)) for i in range(len(t) - 1)]))
            while len(self._schedules) >= SCHEDULES_KEPT:  # ~9 MB each at 32 steps (F5TTS_v1_Base)
                self._schedules.popitem(last=False)
        self._schedules[key] = schedule
        return schedule

    def _step_inputs_for(self, steps: int) -> _StepInputs:
        """What the step graphs read, with room for ``steps`` (made larger, graphs forgotten, when a schedule
        needs more: F5-TTS's 32 steps fit the first)."""
        if self._step_inputs is None or self._step_inputs.capacity < steps:
            self.forget_graphs()  # they read the old buffers
            self._step_inputs = _StepInputs(max(steps, params.NFE_STEP), self.dit.conditioning_width, self.dtype,
                                            self.device)
        return self._step_inputs

    def forget_graph(self, batch: int, frames: int, cfg_strength: float) -> None:
        """Drop one shape's graphs (and the GPU memory they hold), if captured."""
        self._graphs.pop((batch, frames, cfg_strength), None)

    def has_graph(self, batch: int, frames: int, cfg_strength: float) -> bool:
        return (batch, frames, cfg_strength) in self._graphs

    def _graph(self, batch, frames, cfg_strength) -> _StepGraph | None:
        """The shape's step graphs, captured if new; None for a shape whose capture failed (it runs eagerly)."""
        key = (batch, frames, cfg_strength)
        if key in self._eager_shapes:
            return None
        graph = self._graphs.pop(key, None)
        if graph is None:
            try:
                graph = _StepGraph(self.dit, self._step_inputs_for(params.NFE_STEP), batch, frames, self.n_mels,
                                   cfg_strength, self.dtype, self.device, self.graph_pool)
            except graphs.CaptureFailed:
                self._eager_shapes.add(key)
                return None
            while len(self._graphs) >= self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs[key] = graph
        return graph
