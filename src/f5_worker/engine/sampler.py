"""F5-TTS's flow-matching sampler, for a batch of independent requests.

``CFM.sample`` integrates the DiT's velocity field with Euler steps (EPSS timesteps, sway
sampling, classifier-free guidance). This module does the same arithmetic with F5-TTS's own
modules, and changes what a server needs changed:

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

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import f5lib
from .attention import FusedAttnProcessor, block_forward, install, rotary

__all__ = ["SampleRequest", "SamplingConfig", "Sampler", "timesteps", "initial_noise", "velocity",
           "conv_position_embedding"]


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

    steps: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float | None = -1.0


def timesteps(config: SamplingConfig, device, dtype) -> torch.Tensor:
    """F5-TTS's schedule: EPSS timesteps for low step counts, else uniform, then sway sampling."""
    t = f5lib.model_utils.get_epss_timesteps(config.steps, device=device, dtype=dtype)
    if config.sway_sampling_coef is not None:
        t = t + config.sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
    return t


def initial_noise(request: SampleRequest, n_mels: int, device, dtype) -> torch.Tensor:
    """The request's starting noise: a function of its seed and length only (as ``CFM.sample(seed=...)`` draws it)."""
    generator = torch.Generator(device=device).manual_seed(request.seed)
    return torch.randn(request.frames, n_mels, device=device, dtype=dtype, generator=generator)


def conv_position_embedding(module, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``ConvPositionEmbedding.forward`` (conv, mask, Mish, twice) as channels-last 2-D convolutions.

    The (batch, frames, dim) activations already are channels-last; F5-TTS's Conv1d makes them
    contiguous channels-first, and cuDNN transposes them back around a slow grouped kernel.
    """
    keep = None if mask is None else mask[:, None, None, :]
    h = x.transpose(1, 2).unsqueeze(2)  # (batch, dim, 1, frames), channels-last in memory
    if keep is not None:
        h = h.masked_fill(~keep, 0.0)
    for layer in module.conv1d:
        if isinstance(layer, torch.nn.Conv1d):
            weight = layer.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            h = F.conv2d(h, weight, layer.bias, padding=(0, layer.padding[0]), groups=layer.groups)
            if keep is not None:
                h = h.masked_fill(~keep, 0.0)
        else:
            h = layer(h)
    return h.squeeze(2).transpose(1, 2)


def velocity(dit, x, cond, text_cond, text_uncond, time, mask, cfg_strength):
    """The guided flow: DiT.forward(cfg_infer=True) with the text embedding computed once per request.

    The conditional and unconditional halves go through the input embedding together
    (one convolution call instead of two); the rest is DiT.forward's own sequence.
    """
    batch, seq_len = x.shape[:2]
    t = dit.time_embed(time.expand(batch))
    guided = cfg_strength > 1e-5
    if guided:
        x = torch.cat((x, x))
        cond = torch.cat((cond, torch.zeros_like(cond)))
        text = torch.cat((text_cond, text_uncond))
        t = torch.cat((t, t))
        mask = torch.cat((mask, mask)) if mask is not None else None
    else:
        text = text_cond
    h = dit.input_embed.proj(torch.cat((x, cond, text), dim=-1))  # InputEmbedding.forward, faster convolutions
    h = conv_position_embedding(dit.input_embed.conv_pos_embed, h, mask) + h
    if isinstance(dit.transformer_blocks[0].attn.processor, FusedAttnProcessor):
        rope = rotary(dit, seq_len, x.dtype)  # once per step, not once per layer
    else:
        rope = dit.rotary_embed.forward_from_seq_len(seq_len)
    residual = h
    for block in dit.transformer_blocks:
        h = block_forward(block, h, t, mask=mask, rope=rope)
    if dit.long_skip_connection is not None:
        h = dit.long_skip_connection(torch.cat((h, residual), dim=-1))
    out = dit.proj_out(dit.norm_out(h, t))
    if not guided:
        return out
    pred, null_pred = torch.chunk(out, 2, dim=0)
    return pred + (pred - null_pred) * cfg_strength


class _StepGraph:
    """One Euler step, ``x += dt * velocity(x, t)``, captured for one (batch, length) shape."""

    def __init__(self, dit, batch: int, frames: int, n_mels: int, text_dim: int, cfg_strength: float,
                 dtype, device, pool):
        def empty(*shape):
            return torch.zeros(*shape, device=device, dtype=dtype)

        self.x, self.cond = empty(batch, frames, n_mels), empty(batch, frames, n_mels)
        self.text_cond, self.text_uncond = empty(batch, frames, text_dim), empty(batch, frames, text_dim)
        self.time, self.dt = empty(()), empty(())

        def step():
            v = velocity(dit, self.x, self.cond, self.text_cond, self.text_uncond, self.time, None, cfg_strength)
            self.x.add_(self.dt * v)

        # Kernel choice and lazy initialisation happen on an eager run, never inside a capture.
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            step()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool, stream=stream):
                step()
        torch.cuda.current_stream(device).wait_stream(stream)

    def run(self, x, cond, text_cond, text_uncond, t: torch.Tensor) -> torch.Tensor:
        self.x.copy_(x), self.cond.copy_(cond)
        self.text_cond.copy_(text_cond), self.text_uncond.copy_(text_uncond)
        for i in range(len(t) - 1):
            self.time.copy_(t[i])
            self.dt.copy_(t[i + 1] - t[i])
            self.graph.replay()
        return self.x.clone()


class Sampler:
    """Samples mel spectrograms for batches of requests with one F5-TTS ``CFM`` model.

    ``backends`` maps "single" (no mask) and "batch" (masked) to an ``attn_backend``; not
    thread-safe: one thread (the batcher's) owns it.
    """

    def __init__(self, cfm, *, backends: dict[str, str] | None = None, cuda_graphs: bool = True,
                 max_graphs: int | None = None):
        self.cfm = cfm
        self.dit = cfm.transformer
        install(self.dit)
        self.backends = {"single": "torch", "batch": "torch"} | (backends or {})
        param = next(cfm.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.n_mels = cfm.num_channels
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        if max_graphs is None and self.cuda_graphs:
            # A single-request graph holds ~64 MiB of GPU memory on the H100 (bench/results/
            # new-lengths-prewarmed-h100.json: 64 graphs, 4 GiB): keep them within a tenth of the GPU.
            total = torch.cuda.get_device_properties(self.device).total_memory
            max_graphs = max(8, min(128, total // 10 // (64 * 2**20)))
        self.max_graphs = max_graphs or 0
        self._graphs: OrderedDict[tuple, _StepGraph] = OrderedDict()
        self._pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        self.split_mixed = False  # requests of different lengths: one masked batch, or equal-length groups

    def _attention(self, masked: bool) -> None:
        backend = self.backends["batch" if masked else "single"]
        for block in self.dit.transformer_blocks:
            block.attn.processor.attn_backend = backend
            block.attn.processor.attn_mask_enabled = masked

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
        lens = torch.tensor(lengths, device=device)
        mask = None if same_length else f5lib.model_utils.lens_to_mask(lens)

        cond = torch.zeros(batch, frames, self.n_mels, device=device, dtype=dtype)
        cond_mask = torch.zeros(batch, frames, 1, device=device, dtype=torch.bool)
        x = torch.zeros(batch, frames, self.n_mels, device=device, dtype=dtype)
        text = torch.full((batch, max(r.text.numel() for r in requests)), -1, dtype=torch.long)
        for i, r in enumerate(requests):
            cond[i, : r.reference_frames] = r.cond.to(device=device, dtype=dtype)
            cond_mask[i, : r.reference_frames] = True
            x[i, : r.frames] = initial_noise(r, self.n_mels, device, dtype)
            text[i, : r.text.numel()] = r.text
        text = text.to(device)

        self._attention(masked=mask is not None)
        seq_len = frames if mask is None else lens
        text_cond = self.dit.text_embed(text, seq_len=seq_len, drop_text=False)
        text_uncond = self.dit.text_embed(text, seq_len=seq_len, drop_text=True)
        t = timesteps(config, device, dtype)

        if mask is None and self.cuda_graphs:
            x = self._graph(batch, frames, text_cond.shape[-1], config.cfg_strength).run(
                x, cond, text_cond, text_uncond, t)
        else:
            for i in range(len(t) - 1):
                v = velocity(self.dit, x, cond, text_cond, text_uncond, t[i], mask, config.cfg_strength)
                x = x + (t[i + 1] - t[i]) * v
        out = torch.where(cond_mask, cond, x)
        return [out[i, : r.frames] for i, r in enumerate(requests)]

    def set_backends(self, backends: dict[str, str]) -> None:
        """Use other attention kernels from the next batch on; graphs captured with the old ones are dropped."""
        self.backends = {**self.backends, **backends}
        self._graphs.clear()

    def has_graph(self, batch: int, frames: int, cfg_strength: float) -> bool:
        return (batch, frames, cfg_strength) in self._graphs

    def _graph(self, batch, frames, text_dim, cfg_strength) -> _StepGraph:
        key = (batch, frames, cfg_strength)
        graph = self._graphs.pop(key, None)
        if graph is None:
            graph = _StepGraph(self.dit, batch, frames, self.n_mels, text_dim, cfg_strength, self.dtype,
                               self.device, self._pool)
            while len(self._graphs) >= self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs[key] = graph
        return graph
