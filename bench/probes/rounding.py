#!/usr/bin/env python3
"""The kernels' fp16 rounding against F5-TTS's on the GPU, the sampler's numerics per variant, rotation block sizes.

    source bench/gpu_env.sh flash && python3 bench/probes/rounding.py [--json OUT]   # bash bench/gpu.sh probe-rounding

F5TTS_v1_Base size, random weights, fp16, on CUDA:
- per kernel, the share of elements bit-equal to F5-TTS's own modules in fp16 (ConvPositionEmbedding; the
  gated residual and modulated norm as DiTBlock writes them; x-transformers' rotation), and the share the
  single-rounding computation (PyTorch's fused ops) reaches;
- the sampler's mean relative difference from F5-TTS's CFM.sample (SDPA), over --seeds requests: PyTorch's
  kernels, the Triton kernels, and the Triton kernels with the feed-forward's GELU as its own kernel (F5-TTS
  rounds the matmul's output before the GELU; the epilogue does not), beside F5-TTS's flash-vs-SDPA yardstick;
- the rotation kernel's time per (rows per program, warps) at one request's and eight requests' q/k/v.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import f5_reference, flash_attn_available, mean_rel_diff, report  # noqa: E402



def share_equal(a, b) -> float:
    return round(float((a == b).float().mean()), 5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--model", default="F5TTS_v1_Base", help="tiny-random with --device cpu: a smoke run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=1406, help="frames in all, a third of them the reference")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.device == "cpu":  # the kernels run on the CPU only in Triton's interpreter (set before they are defined)
        os.environ["TRITON_INTERPRET"] = "1"
    from f5_worker.engine.models import ModelFiles, build_model
    from f5_worker.engine.nn import dit as dit_module
    from f5_worker.engine.nn import kernels
    from f5_worker.engine.nn.rotary import rotate
    from f5_worker.engine.sampler import SampleRequest, Sampler, SamplingConfig

    device = args.device
    FRAMES, REF_FRAMES = args.frames, args.frames // 3  # noqa: N806  (constants of the run)
    model = build_model(args.model, ModelFiles(), device=device)
    dit = model.transformer
    dtype = next(model.parameters()).dtype
    conv = dit.input_embed.conv_pos_embed
    first_conv = conv.conv1d[0]
    dim, heads, dim_head = dit.dim, dit.transformer_blocks[0].attn.heads, dit.transformer_blocks[0].attn.dim_head
    f5 = f5_reference()
    out: dict = {"gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__, "kernels_check": kernels.check(dit)}
    g = torch.Generator(device=device).manual_seed(0)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, device=device, generator=g)).to(dtype)

    # 1. Each kernel against F5-TTS's own fp16 modules on this GPU, with and without fused multiply-adds.
    def bit_equality() -> dict:
        bits: dict = {}
        with torch.inference_mode():
            x = randn(2, FRAMES, dim)
            stock_conv = f5.modules.ConvPositionEmbedding(dim=dim, kernel_size=first_conv.kernel_size[0],
                                                          groups=first_conv.groups).to(device, dtype)
            stock_conv.load_state_dict(conv.state_dict())
            expected = stock_conv(x) + x
            dit.use_kernels(True)
            bits["conv_mish"] = {"kernel": share_equal(conv.plus_input(x), expected)}
            dit.use_kernels(False)
            bits["conv_mish"]["pytorch"] = share_equal(conv.plus_input(x), expected)

            y, gate, shift, scale = randn(2, FRAMES, dim), randn(dim), randn(dim), randn(dim, scale=0.3)
            norm = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            residual = x + gate[None, None] * y  # f5_tts DiTBlock: x = x + gate.unsqueeze(1) * out
            expected = norm(residual) * (1 + scale[None, None]) + shift[None, None]
            stream = x.clone()
            got = kernels.residual_norm(stream, y, gate, shift, scale)
            one = dit_module.modulate(torch.addcmul(x, gate, y), shift[None, None], scale[None, None])
            bits["residual_norm"] = {"kernel": share_equal(got, expected), "kernel_residual": share_equal(stream, residual),
                                     "pytorch": share_equal(one, expected)}

            from x_transformers.x_transformers import RotaryEmbedding as F5Rotary
            from x_transformers.x_transformers import apply_rotary_pos_emb

            qkv = randn(2, FRAMES, 3, heads, dim_head)
            freqs, xscale = F5Rotary(dim_head).to(device, dtype).forward_from_seq_len(FRAMES)
            expected_q = apply_rotary_pos_emb(qkv[:, :, 0].transpose(1, 2), freqs, xscale).transpose(1, 2)
            rope = dit.rotary_embed.angles(FRAMES, dtype)
            bits["rotate_qk_"] = {"pytorch": share_equal(rotate(qkv[:, :, 0], rope), expected_q)}
            kernels.rotate_qk_(qkv, rope)
            bits["rotate_qk_"]["kernel"] = share_equal(qkv[:, :, 0], expected_q)
        return bits

    out["bit_equal_to_f5"] = {}
    for fusion in (True, False):
        kernels.LAUNCH["enable_fp_fusion"] = fusion
        out["bit_equal_to_f5"][f"fp_fusion {fusion}"] = bits = bit_equality()
        print("bit-equal to F5-TTS's fp16 modules, fp fusion", fusion, bits, flush=True)
    # 2. The sampler's numerics per variant.
    config = SamplingConfig()
    gen = torch.Generator().manual_seed(0)
    cond = torch.randn(REF_FRAMES, 100, generator=gen).to(device=device, dtype=dtype)
    text = torch.randint(0, 2000, (min(160, FRAMES // 3),), generator=gen)
    cfm = f5.cfm_like(model)

    def stock(backend, seed):
        for block in cfm.transformer.transformer_blocks:
            block.attn.processor.attn_backend = backend
        with torch.inference_mode():
            mel, _ = cfm.sample(cond=cond[None], text=text[None].to(device), duration=FRAMES, steps=config.steps,
                                cfg_strength=config.cfg_strength, sway_sampling_coef=config.sway_sampling_coef,
                                seed=seed)
        return mel[0, REF_FRAMES:].float()

    def ours(seed):
        return Sampler(model).sample([SampleRequest(cond, text, FRAMES, seed=seed)], config)[0][REF_FRAMES:].float()

    seeds = range(args.seeds)
    reference = [stock("torch", s) for s in seeds]
    diffs: dict = {}
    if flash_attn_available():
        diffs["f5_flash_vs_f5_sdpa (yardstick)"] = [mean_rel_diff(stock("flash_attn", s), r) for s, r in zip(seeds, reference)]
    dit.use_kernels(False)
    diffs["pytorch kernels"] = [mean_rel_diff(ours(s), r) for s, r in zip(seeds, reference)]
    dit.use_kernels(True)
    diffs["triton kernels"] = [mean_rel_diff(ours(s), r) for s, r in zip(seeds, reference)]
    fused_gelu = dit_module.FeedForward.forward

    def gelu_apart(self, x):  # F5-TTS's nn.Sequential(nn.Linear, nn.GELU("tanh")): the matmul's output rounds first
        return self.ff[2](F.gelu(self.ff[0][0](x), approximate="tanh"))

    dit_module.FeedForward.forward = gelu_apart
    diffs["triton kernels, GELU apart"] = [mean_rel_diff(ours(s), r) for s, r in zip(seeds, reference)]
    dit_module.FeedForward.forward = fused_gelu
    out["numerics_mean_rel_diff"] = {k: float(f"{statistics.mean(v):.3g}") for k, v in diffs.items()}
    out["numerics_per_seed"] = {k: [float(f"{x:.3g}") for x in v] for k, v in diffs.items()}
    print("numerics", out["numerics_mean_rel_diff"], flush=True)

    # 3. Where one velocity evaluation first departs from F5-TTS's (PyTorch's kernels, then the Triton ones):
    # every stage's share of bit-equal elements and mean relative difference, same inputs, t = 0.5.
    stock_dit = cfm.transformer
    for block in stock_dit.transformer_blocks:
        block.attn.processor.attn_backend = "torch"
    frames = FRAMES
    noise = torch.randn(1, frames, 100, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    step_cond = torch.zeros(1, frames, 100, device=device, dtype=dtype)
    step_cond[0, :REF_FRAMES] = cond
    ids = text[None].to(device)
    time = torch.tensor(0.5, device=device, dtype=dtype)

    def capture(modules: dict) -> tuple[dict, list]:
        seen: dict = {name: [] for name in modules}
        handles = [module.register_forward_hook(lambda m, i, o, name=name: seen[name].append(o.clone()))
                   for name, module in modules.items()]
        return seen, handles

    def stage_modules(d) -> dict:
        return {"input_embed": d.input_embed, **{f"block {i}": b for i, b in enumerate(d.transformer_blocks)},
                "proj_out": d.proj_out}

    divergence: dict = {}
    with torch.inference_mode():
        stock_dit.clear_cache()
        theirs, handles = capture(stage_modules(stock_dit))
        stock_dit(x=noise, cond=step_cond, text=ids, time=time, cfg_infer=True, cache=False)
        for h in handles:
            h.remove()
        for label, on in (("pytorch kernels", False), ("triton kernels", True)):
            dit.use_kernels(on)
            mine, handles = capture({"input_embed": dit.input_embed, "proj_out": dit.proj_out,
                                     **({} if on else {f"block {i}": b for i, b in enumerate(dit.transformer_blocks)})})
            text_cond = dit.text_embed(ids, seq_len=frames, drop_text=False)
            text_uncond = dit.text_embed(ids, seq_len=frames, drop_text=True)
            dit(noise, step_cond, text_cond, text_uncond, time, None, 2.0)  # the kernels update x in place: hooks clone
            for h in handles:
                h.remove()
            row = {}
            for name, outs in mine.items():
                expected = torch.cat(theirs[name]) if len(theirs[name]) > 1 else theirs[name][0]
                got = outs[0]
                row[name] = [share_equal(got, expected), float(f"{mean_rel_diff(got.float(), expected.float()):.3g}")]
            divergence[label] = row
            print("divergence", label, {k: v for k, v in row.items() if k in ("input_embed", "block 0", "block 1",
                                                                             "block 21", "proj_out")}, flush=True)
    out["stage_bit_equal_and_rel_diff"] = divergence

    # 4. Rotation blocks.
    timings: dict = {}
    for batch in ((2, 16) if device == "cuda" else ()):  # one request (a CFG pair), eight
        qkv = randn(batch, FRAMES, 3, heads, dim_head)
        rope = dit.rotary_embed.angles(FRAMES, dtype)
        row = {}
        for rows in (1, 2, 4, 8, 16):
            for warps in (2, 4, 8):
                fn = lambda: kernels.rotate_qk_(qkv, rope, None, rows, warps)  # noqa: E731
                fn()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                for _ in range(50):
                    fn()
                end.record()
                torch.cuda.synchronize()
                row[f"{rows}x{warps}"] = round(start.elapsed_time(end) / 50 * 1000, 1)  # µs
        timings[f"sequences {batch}"] = row
        print("rotation µs", batch, row, flush=True)
    out["rotation_us"] = timings
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
