"""F5-TTS's DiT (``f5_tts/model/backbones/dit.py`` and ``modules.py``), for inference.

Parameter names and shapes are F5-TTS's, so its published checkpoints load unchanged; modules are
created in F5-TTS's order with its initialisations, so a seeded random model gets the same weights.
What differs is how the same function is computed:

- the forward pass takes the text embedding from the caller (computed once per request, not once
  per step) and runs the conditional and unconditional halves of classifier-free guidance as one
  batch through the input embedding too;
- the rotary angles are computed once per step, not once per layer;
- every block's modulation (shift, scale, gate) comes from one matmul per step (``fuse``); with one time
  step for the whole batch, a modulation is the LayerNorm's own affine transform (``modulate``), and
  each gated residual is one ``addcmul`` instead of two or three passes;
- on CUDA the feed-forward's tanh GELU runs in its first matmul's epilogue;
- the convolutional position embedding runs as channels-last 2-D convolutions: the (batch, frames,
  dim) activations already are channels-last, and cuDNN's grouped Conv1d would transpose them twice;
- attention is ``attention.Attention`` (one q/k/v projection, complex rotation);
- after ``use_kernels(True)`` (the engine, on CUDA, once checked), the Triton kernels of ``kernels`` run
  the position convolution, the rotation and each residual with the norm after it.

Options no published checkpoint uses (``qk_norm``, ``long_skip_connection``, average upsampling of
text) and training-only ones (dropout, activation checkpointing) are left out: ``DiTArch`` has no field
for them (``tests/engine/test_checkpoint.py`` checks F5-TTS's configs set none).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .layers import Conv1d, Embedding, Linear, StackedLinears
from .rotary import RotaryEmbedding

__all__ = ["DiTArch", "DiT", "DiTBlock", "TextEmbedding", "InputEmbedding", "ConvPositionEmbedding",
           "ConvNeXtV2Block", "TimestepEmbedding", "AdaLayerNorm", "AdaLayerNorm_Final", "FeedForward",
           "conv_position_embedding", "modulate", "precompute_freqs_cis"]


@dataclass(frozen=True)
class DiTArch:
    """A DiT's shape: F5-TTS's ``model.arch`` config values (``configs/<model>.yaml``)."""

    dim: int
    depth: int
    heads: int
    ff_mult: int
    text_dim: int
    conv_layers: int
    text_mask_padding: bool = True
    pe_attn_head: int | None = None
    dim_head: int = 64

    def f5_tts_kwargs(self) -> dict:
        """The same shape as F5-TTS's ``DiT(**kwargs)`` takes it (tests and benchmarks build F5-TTS's own)."""
        return asdict(self)


class SinusPositionEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, scale: float = 1000) -> torch.Tensor:
        half_dim = self.dim // 2
        emb = math.log(10000) / (half_dim - 1)
        emb = torch.exp(torch.arange(half_dim, device=x.device).float() * -emb)
        emb = scale * x.unsqueeze(1) * emb.unsqueeze(0)
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int, freq_embed_dim: int = 256):
        super().__init__()
        self.time_embed = SinusPositionEmbedding(freq_embed_dim)
        self.time_mlp = nn.Sequential(Linear(freq_embed_dim, dim), nn.SiLU(), Linear(dim, dim))

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        return self.time_mlp(self.time_embed(timestep).to(timestep.dtype))


def precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    """The text embedding's sinusoidal positions, (end, dim): cosines then sines."""
    # On the CPU, where F5-TTS computes them, also while a model is built on the meta device (``layers``).
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, device="cpu")[: (dim // 2)].float() / dim))
    freqs = torch.outer(torch.arange(end, device=freqs.device), freqs).float()
    return torch.cat([torch.cos(freqs), torch.sin(freqs)], dim=-1)


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt-V2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int, dilation: int = 1):
        super().__init__()
        padding = (dilation * (7 - 1)) // 2
        self.dwconv = Conv1d(dim, dim, kernel_size=7, padding=padding, groups=dim, dilation=dilation)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.grn = GRN(intermediate_dim)
        self.pwconv2 = Linear(intermediate_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(h)))))
        return x + h


class TextEmbedding(nn.Module):
    """Token ids to a per-frame text embedding: padded or cut to the frames, sinusoidal positions, ConvNeXt-V2 blocks.

    ``mask_padding`` (F5TTS_v1_Base: True, F5TTS_Base: False) keeps filler tokens at zero between blocks.
    """

    MAX_POS = 8192  # F5-TTS's precomputed positions (~87 s at 24 kHz); longer texts reuse the last

    def __init__(self, text_num_embeds: int, text_dim: int, mask_padding: bool = True, conv_layers: int = 0,
                 conv_mult: int = 2):
        super().__init__()
        self.text_embed = Embedding(text_num_embeds + 1, text_dim)  # 0 is the filler token
        self.mask_padding = mask_padding
        self.text_dim = text_dim
        self.extra_modeling = conv_layers > 0
        if self.extra_modeling:
            # Not in the state dict: ``init_buffers`` computes it where the model is loaded.
            self.register_buffer("freqs_cis", precompute_freqs_cis(text_dim, self.MAX_POS), persistent=False)
            self.text_blocks = nn.Sequential(*[ConvNeXtV2Block(text_dim, text_dim * conv_mult) for _ in range(conv_layers)])

    def init_buffers(self, device, dtype) -> None:
        if self.extra_modeling:
            # Computed in float32 and cast, as F5-TTS's model gets it (built in fp32, then ``.to(dtype)``).
            self.freqs_cis = precompute_freqs_cis(self.text_dim, self.MAX_POS).to(device=device, dtype=dtype)

    def forward(self, text: torch.Tensor, seq_len: int | torch.Tensor, drop_text: bool = False) -> torch.Tensor:
        """text (batch, tokens) ids, -1 padded; seq_len: frames, or each request's frames (batch,)."""
        return self._embed(text, seq_len, (drop_text,))

    def both(self, text: torch.Tensor, seq_len: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward(drop_text=False)`` and ``forward(drop_text=True)``, as one batch twice the size: classifier-free
        guidance needs both, and the blocks' kernels launch once instead of twice."""
        cond, uncond = self.rows(text, seq_len, guided=True).chunk(2)
        return cond, uncond

    def rows(self, text: torch.Tensor, seq_len: int | torch.Tensor, guided: bool) -> torch.Tensor:
        """The text rows of ``DiT.flow_inputs``: ``forward(drop_text=False)``, then, guided, ``drop_text=True``, as
        one batch. With ``text`` (batch, frames) and ``seq_len`` an int, every shape is fixed: a CUDA graph can
        hold it (the sampler's step graphs do)."""
        return self._embed(text, seq_len, (False, True) if guided else (False,))

    def _embed(self, text: torch.Tensor, seq_len: int | torch.Tensor, drops: tuple[bool, ...]) -> torch.Tensor:
        text = text + 1  # 0 becomes the filler token, and the -1 padding becomes 0
        valid_pos_mask = None
        if torch.is_tensor(seq_len):
            seq_len = seq_len.to(device=text.device, dtype=torch.long)
            max_seq_len = int(seq_len.max().item())
        else:
            max_seq_len = int(seq_len)
        text = text[:, :max_seq_len]  # more tokens than frames: the tail is cut
        text = F.pad(text, (0, max_seq_len - text.shape[1]), value=0)
        if torch.is_tensor(seq_len):
            valid_pos_mask = torch.arange(max_seq_len, device=text.device)[None] < seq_len[:, None]
            text = text.masked_fill(~valid_pos_mask, 0)
            valid_pos_mask = valid_pos_mask.repeat(len(drops), 1)
        # The filler mask is the text's own, also where the text is dropped (F5-TTS takes it before the drop).
        text_mask = (text == 0).repeat(len(drops), 1) if self.mask_padding else None
        text = torch.cat([torch.zeros_like(text) if drop else text for drop in drops])
        text = self.text_embed(text)
        if valid_pos_mask is not None:
            text = text.masked_fill(~valid_pos_mask.unsqueeze(-1), 0.0)
        if self.extra_modeling:
            freqs = self.freqs_cis[:max_seq_len, :]
            if valid_pos_mask is not None:
                freqs = freqs.unsqueeze(0) * valid_pos_mask.unsqueeze(-1).to(freqs.dtype)
            text = text + freqs
            if text_mask is not None:
                filler = text_mask.unsqueeze(-1)
                text = text.masked_fill(filler, 0.0)
                for block in self.text_blocks:
                    text = block(text).masked_fill(filler, 0.0)
            else:
                text = self.text_blocks(text)
        return text


def conv_position_embedding(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``ConvPositionEmbedding.forward`` (conv, mask, Mish, twice) as channels-last 2-D convolutions.

    Works on any module laid out as F5-TTS's (``conv1d``: Conv1d, Mish, Conv1d, Mish), F5-TTS's own included.
    """
    keep = None if mask is None else mask[:, None, None, :]
    h = x.transpose(1, 2).unsqueeze(2)  # (batch, dim, 1, frames), channels-last in memory
    if keep is not None:
        h = h.masked_fill(~keep, 0.0)
    for layer in module.conv1d:
        if isinstance(layer, nn.Conv1d):
            weight = layer.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            h = F.conv2d(h, weight, layer.bias, padding=(0, layer.padding[0]), groups=layer.groups)
            if keep is not None:
                h = h.masked_fill(~keep, 0.0)
        else:
            h = layer(h)
    return h.squeeze(2).transpose(1, 2)


class ConvPositionEmbedding(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.conv1d = nn.Sequential(
            Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
            Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
        )
        self.kernel_weights: list[torch.Tensor] | None = None  # set by DiT.use_kernels

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return conv_position_embedding(self, x, mask)

    def plus_input(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``forward(x, mask) + x``: with the kernels and no mask, two passes of ``kernels.conv_mish``."""
        if self.kernel_weights is None or mask is not None:
            return conv_position_embedding(self, x, mask) + x
        from . import kernels

        first, second = (layer for layer in self.conv1d if isinstance(layer, nn.Conv1d))
        x = x.contiguous()
        h = kernels.conv_mish(x, self.kernel_weights[0], first.bias)
        return kernels.conv_mish(h, self.kernel_weights[1], second.bias, residual=x)


class InputEmbedding(nn.Module):
    def __init__(self, mel_dim: int, text_dim: int, out_dim: int):
        super().__init__()
        self.proj = Linear(mel_dim * 2 + text_dim, out_dim)
        self.conv_pos_embed = ConvPositionEmbedding(dim=out_dim)

    def forward(self, x, cond, text_embed, mask=None):
        return self.project(torch.cat((x, cond, text_embed), dim=-1), mask)

    def project(self, inputs: torch.Tensor, mask=None) -> torch.Tensor:
        """``forward`` of the three side by side, (rows, frames, 2 mel_dim + text_dim) (``DiT.flow_inputs``)."""
        return self.conv_pos_embed.plus_input(self.proj(inputs), mask)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm without affine parameters, then ``x * (1 + scale) + shift`` (shift, scale (rows, 1, dim)).

    When one modulation serves every row (all requests of a batch share the time step), it is exactly the
    norm's affine transform: one kernel instead of two.
    """
    if shift.shape[0] == 1:
        return F.layer_norm(x, x.shape[-1:], 1 + scale.view(-1), shift.view(-1), eps)
    return torch.addcmul(shift, F.layer_norm(x, x.shape[-1:], eps=eps), 1 + scale)


class AdaLayerNorm(nn.Module):
    """The block's modulation from the time embedding: shift, scale and gate for attention and feed-forward.

    Only the parameters: ``DiT.modulations`` computes every block's at once.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.linear = Linear(dim, dim * 6)


class AdaLayerNorm_Final(nn.Module):  # noqa: N801  F5-TTS's name
    def __init__(self, dim: int):
        super().__init__()
        self.linear = Linear(dim, dim * 2)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: float = 4):
        super().__init__()
        inner = int(dim * mult)
        # F5-TTS's layout: ff.0.0 (in), ff.1 (dropout, no weights), ff.2 (out).
        self.ff = nn.Sequential(nn.Sequential(Linear(dim, inner), nn.GELU(approximate="tanh")), nn.Identity(),
                                Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = self.ff[0][0]
        if x.is_cuda:
            # cuBLASLt applies the tanh GELU in the matmul's epilogue: no pass over the activations of its own.
            # (On the CPU, _addmm_activation's GELU is the erf one, so it is not used there.)
            h = torch._addmm_activation(inner.bias, x.reshape(-1, x.shape[-1]), inner.weight.t(), use_gelu=True)
            h = h.view(*x.shape[:-1], -1)
        else:
            h = F.gelu(inner(x), approximate="tanh")
        return self.ff[2](h)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: float = 4, pe_attn_head: int | None = None):
        super().__init__()
        self.attn_norm = AdaLayerNorm(dim)
        self.attn = Attention(dim, heads=heads, dim_head=dim_head, pe_attn_head=pe_attn_head)
        self.ff = FeedForward(dim, mult=ff_mult)

    def forward(self, x, modulation, mask=None, rope=None):
        """Modulated attention, then modulated feed-forward, each with a gated residual.

        modulation: this block's ``attn_norm.linear`` output, (batch, 6 * dim), or (1, 6 * dim) for all rows.
        """
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation[:, None].chunk(6, dim=-1)
        x = torch.addcmul(x, gate_msa, self.attn(modulate(x, shift_msa, scale_msa), mask=mask, rope=rope))
        return torch.addcmul(x, gate_mlp, self.ff(modulate(x, shift_mlp, scale_mlp)))


class DiT(nn.Module):
    def __init__(self, arch: DiTArch, *, text_num_embeds: int, mel_dim: int = 100):
        super().__init__()
        self.arch = arch
        self.time_embed = TimestepEmbedding(arch.dim)
        self.text_embed = TextEmbedding(text_num_embeds, arch.text_dim, mask_padding=arch.text_mask_padding,
                                        conv_layers=arch.conv_layers)
        self.input_embed = InputEmbedding(mel_dim, arch.text_dim, arch.dim)
        self.rotary_embed = RotaryEmbedding(arch.dim_head)
        self.dim, self.depth = arch.dim, arch.depth
        self.transformer_blocks = nn.ModuleList([
            DiTBlock(arch.dim, arch.heads, arch.dim_head, ff_mult=arch.ff_mult, pe_attn_head=arch.pe_attn_head)
            for _ in range(arch.depth)
        ])
        self.norm_out = AdaLayerNorm_Final(arch.dim)
        self.proj_out = Linear(arch.dim, mel_dim)
        self._modulations: StackedLinears | None = None
        self._kernels = None  # the ``kernels`` module once ``use_kernels(True)``
        # F5-TTS zero-initialises the modulations and the output (for training); checkpoints overwrite them.
        for block in self.transformer_blocks:
            nn.init.zeros_(block.attn_norm.linear.weight)
            nn.init.zeros_(block.attn_norm.linear.bias)
        for param in (self.norm_out.linear.weight, self.norm_out.linear.bias, self.proj_out.weight, self.proj_out.bias):
            nn.init.zeros_(param)

    def init_buffers(self, device, dtype) -> None:
        """Compute what the state dict does not carry, on ``device`` in ``dtype`` (after loading onto the meta device)."""
        self.text_embed.init_buffers(device, dtype)

    def fuse(self) -> None:
        """The inference layout: each attention's q, k and v as one matmul, and all modulations as one.

        Every block's modulation and the output's are linear maps of the same time embedding: one matmul per
        step computes them all (23 otherwise). The parameters become views (``StackedLinears``).
        """
        for block in self.transformer_blocks:
            block.attn.fuse_qkv()
        self._modulations = StackedLinears([block.attn_norm.linear for block in self.transformer_blocks]
                                           + [self.norm_out.linear])

    def modulations(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each block's modulation, then the output's, from the time embedding t (rows, dim)."""
        t = F.silu(t)
        if self._modulations is not None:
            return self._modulations(t)
        return tuple(F.linear(t, lin.weight, lin.bias) for lin in self._modulation_linears())

    def _modulation_linears(self) -> list[nn.Linear]:
        return [block.attn_norm.linear for block in self.transformer_blocks] + [self.norm_out.linear]

    @property
    def conditioning_width(self) -> int:
        """The width of a ``time_conditioning`` row."""
        return sum(lin.out_features for lin in self._modulation_linears())

    def time_conditioning(self, time: torch.Tensor) -> torch.Tensor:
        """All that a step takes from its time, one row per time (rows,): the time embedding through every
        block's modulation and the output's, side by side. ``forward(..., conditioning=...)`` takes it instead
        of the time: the sampler computes a schedule's once (a step reads ~280 MB of modulation weights
        otherwise, ~70 µs on the H200)."""
        t = self.time_embed(time)
        if self._modulations is not None:
            return F.linear(F.silu(t), *self._modulations.weight_bias())
        return torch.cat(self.modulations(t), dim=-1)

    def use_kernels(self, on: bool) -> None:
        """Run the Triton kernels of ``kernels`` where they apply (from the next call; call again after new weights).

        They apply when one time step serves the whole batch (the sampler's case); the position
        convolution's also needs no mask. Off: PyTorch's kernels only (the CPU's path, and the GPU's
        until the engine has compiled and checked these).
        """
        conv = self.input_embed.conv_pos_embed
        if not on:
            self._kernels, conv.kernel_weights = None, None
            for block in self.transformer_blocks:
                block.attn.kernels = None
            return
        from . import kernels  # imports Triton: only when asked

        layers = [layer for layer in conv.conv1d if isinstance(layer, nn.Conv1d)]
        group = layers[0].in_channels // layers[0].groups
        # tl.dot needs 16 or more channels per group (F5-TTS's sizes have 64): smaller ones keep cuDNN
        conv.kernel_weights = ([kernels.conv_weight_for_kernel(layer.weight, layer.groups) for layer in layers]
                               if group >= 16 and group & (group - 1) == 0 else None)
        for block in self.transformer_blocks:
            block.attn.kernels = kernels
        self._kernels = kernels

    def set_attention(self, backend: str, masked: bool) -> None:
        """Every layer's attention backend ("torch" | "flash_attn" | "fa4") and whether a mask restricts it."""
        for block in self.transformer_blocks:
            block.attn.backend, block.attn.masked = backend, masked

    def _blocks_with_kernels(self, x, block_modulations, final, mask, rope):
        """The blocks and the output norm as ``forward`` runs them, each residual fused with the norm after it.

        x + gate * attention, then the feed-forward's modulated norm; x + gate * feed-forward, then the next
        block's (or the output's) modulated norm: one ``residual_norm`` each. Returns the output norm's result.
        """
        residual_norm = self._kernels.residual_norm
        dim = x.shape[-1]
        mods = [m.view(6, dim) for m in block_modulations]  # shift, scale, gate for attention, then for ff
        x = x.contiguous()  # the residual stream, updated in place
        h = residual_norm(x, None, None, mods[0][0], mods[0][1])
        for i, block in enumerate(self.transformer_blocks):
            _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[i]
            h = residual_norm(x, block.attn(h, mask=mask, rope=rope), gate_msa, shift_mlp, scale_mlp)
            scale_next, shift_next = (mods[i + 1][1], mods[i + 1][0]) if i + 1 < len(mods) else final.view(2, dim)
            h = residual_norm(x, block.ff(h), gate_mlp, shift_next, scale_next)
        return h

    def forward(self, x, cond, text_cond, text_uncond, time, mask=None, cfg_strength: float = 0.0, conditioning=None):
        """The flow: ``DiT.forward(cfg_infer=True)`` and CFM's guidance, with the text embedded by the caller.

        x, cond (batch, frames, mel_dim); text_cond, text_uncond (batch, frames, text_dim) from
        ``text_embed(..., drop_text=False / True)``; time () or (batch,); mask (batch, frames) or None.
        Without guidance (``cfg_strength`` 0) only the conditional half runs. ``conditioning``:
        ``time_conditioning`` of the time, (1 or batch, ...), when the caller has it (time is then unused).
        """
        batch = x.shape[0]
        if conditioning is None:
            # One time for the whole batch (the sampler's case): one row of modulations serves every request.
            conditioning = self.time_conditioning(time.reshape(1) if time.ndim == 0 else time.expand(batch))
        guided = cfg_strength > 1e-5
        inputs = self.flow_inputs(x, cond, torch.cat((text_cond, text_uncond)) if guided else text_cond)
        if guided:
            conditioning = torch.cat((conditioning, conditioning)) if conditioning.shape[0] > 1 else conditioning
            mask = torch.cat((mask, mask)) if mask is not None else None
        return self.flow(inputs, conditioning, mask, cfg_strength)

    def flow_inputs(self, x, cond, text) -> torch.Tensor:
        """What the input embedding projects, (rows, frames, 2 mel_dim + text_dim): x, the audio prompt and the
        text side by side. ``text`` has a row per row: guided (twice x's batch, ``TextEmbedding.rows``), the
        conditional rows, then the unconditional ones, whose prompt is zero (CFM drops it with the text). Only
        x changes from step to step: ``set_flow_x`` writes it in place."""
        batch, frames, mel_dim = x.shape
        inputs = x.new_zeros(text.shape[0], frames, 2 * mel_dim + text.shape[-1])
        self.set_flow_x(inputs, x)
        inputs[:batch, :, mel_dim:2 * mel_dim] = cond
        inputs[:, :, 2 * mel_dim:] = text
        return inputs

    @staticmethod
    def set_flow_x(inputs: torch.Tensor, x: torch.Tensor) -> None:
        """x into each of ``flow_inputs``' halves (one copy)."""
        batch, frames, mel_dim = x.shape
        inputs.view(-1, batch, frames, inputs.shape[-1])[..., :mel_dim].copy_(x.expand(inputs.shape[0] // batch, -1, -1, -1))

    def flow(self, inputs, conditioning, mask=None, cfg_strength: float = 0.0, rope=None):
        """``forward`` of ``flow_inputs``' rows: guided (``cfg_strength`` > 0), the guided velocity of the first
        half's requests, else each row's. ``conditioning`` (1 or rows, ...) and ``mask`` (rows, frames) per row."""
        return self.guide(self.flow_rows(inputs, conditioning, mask, rope), cfg_strength)

    @staticmethod
    def guide(out: torch.Tensor, cfg_strength: float) -> torch.Tensor:
        """CFM's classifier-free guidance of ``flow_rows``' output (the conditional rows, then the unconditional)."""
        if cfg_strength <= 1e-5:
            return out
        pred, null_pred = torch.chunk(out, 2, dim=0)
        return pred + (pred - null_pred) * cfg_strength

    @property
    def kernels(self):
        """The Triton kernels module while ``use_kernels`` has them on, else None."""
        return self._kernels

    def flow_rows(self, inputs, conditioning, mask=None, rope=None):
        """The model's output for each of ``flow_inputs``' rows, before guidance; ``rope``:
        ``rotary_embed.angles(frames, dtype)`` when the caller keeps it (a step graph does)."""
        h = self.input_embed.project(inputs, mask)
        if rope is None:
            rope = self.rotary_embed.angles(inputs.shape[1], h.dtype)
        *block_modulations, final = conditioning.split([lin.out_features for lin in self._modulation_linears()], -1)
        if self._kernels is not None and conditioning.shape[0] == 1:
            out = self.proj_out(self._blocks_with_kernels(h, block_modulations, final, mask, rope))
        else:
            for block, modulation in zip(self.transformer_blocks, block_modulations):
                h = block(h, modulation, mask=mask, rope=rope)
            scale, shift = final[:, None].chunk(2, dim=-1)
            out = self.proj_out(modulate(h, shift, scale))
        return out
