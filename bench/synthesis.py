#!/usr/bin/env python3
"""Synthesis speed and fp16 numerics per attention backend: the worker against F5-TTS's own sampler and pipeline.

    python bench/synthesis.py [--model F5TTS_v1_Base] [--runs 5] [--json OUT]
    python bench/synthesis.py --model tiny-random --device cpu --nfe 4 --runs 1 --warm-ups 1 --mixed 4   # smoke run

Random weights at the model's size (speed does not depend on weight values; the audio is noise). The
serving dtype (fp16 on the GPU), Euler, NFE 32, cfg_strength 2, sway -1, a 5 s reference and 10 s to
generate; median of --runs after 2 warm-ups (--warm-ups). For SDPA (F5-TTS's attn_backend "torch") and,
where it imports, flash-attn (bench/gpu_synthesis.sh activates it through the worker's bootstrap), with
one set of weights: the worker's engine builds them, F5-TTS's own modules get a copy (``cfm_like``,
``vocos_like`` in tests/lib/support/f5_reference.py; F5-TTS comes from the kit on the GPU machine).

Timed, one model resident at a time:
- worker_sampler: the worker's Sampler alone, one request of 1405 frames (CUDA graphs, as the engine runs it);
- worker_pipeline: Engine.synthesize (chunk preparation, batcher, sampler, vocoder), the length F5-TTS's
  duration rule gives the text (10.19 s of audio for the real size);
- worker_batch16_mixed: 16 requests of 3-15 s in one masked sampler call (the "batch" backend; --mixed N: N);
- sampler: F5-TTS's CFM.sample alone (what ../shared/gpu/README.md's baseline measured);
- stock_pipeline: F5-TTS's utils_infer.infer_batch_process (sampler + vocoder), as F5TTS.infer runs it, 15 s fixed;
- batch16_mixed: the same 16 requests in one CFM.sample call, attention mask on (what batching needs);
- the physical floor: FLOPs of one synthesis over the measured fp16 matrix rate (GPU only).

Numerics (``numerics_mean_rel_diff``), same seed, same tokens, same reference: the mean relative difference
of each output from F5-TTS's SDPA path, for the sampler (the 936 mel frames after the reference's 469) and
the pipeline (audio, F5-TTS given the engine's length). F5-TTS's own flash-attn path against its SDPA path
is the yardstick of fp16 rounding the worker's differences are read against (on the CPU, fp32, ~1e-7).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

import numpy as np
import torch
import common
from common import environment, f5_reference, flash_attn_available, mean_rel_diff

SR, HOP = 24_000, 256
REF_S, GEN_S = 5.0, 10.0
REF_TEXT = "This is a reference clip of about five seconds. "
GEN_TEXT = "And this is the sentence the worker is asked to speak, about ten seconds of it, no more and no less."
# AttentionChoice's names for the kernels -> F5-TTS's attn_backend names (the keys of the results).
F5_NAMES = {"sdpa": "torch", "flash_attn": "flash_attn", "fa4": "fa4"}


def matmul_tflops(device: str) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    seconds, _ = common.timed(lambda: a @ b, 10, device)
    return 2 * 8192**3 / seconds / 1e12


def synthesis_flops(arch, frames: int, nfe: int) -> float:
    """Matrix FLOPs of one synthesis: NFE steps x the DiT on a CFG pair (batch 2) of ``frames`` tokens.

    Per block: q, k, v, out projections 8 n d^2; scores and values 4 n^2 d; feed-forward 4 ff n d^2.
    Plus the input projection, two grouped conv position layers, the text ConvNeXt blocks and the output
    projection. The vocoder (a few GFLOPs) is left out. ``arch``: ``models.model_arch(name)``.
    """
    n, d, ff, t = frames, arch.dim, arch.ff_mult, arch.text_dim
    block = 8 * n * d * d + 4 * n * n * d + 4 * ff * n * d * d
    embed = 2 * n * (2 * 100 + t) * d + 2 * (2 * n * d * (d // 16) * 31) + arch.conv_layers * 8 * n * t * t
    forward = arch.depth * block + embed + 2 * n * d * 100
    return float(nfe * 2 * forward)


def rtf_row(seconds: float, audio_s: float, peak: float | None, **extra) -> dict:
    return {"ms": round(seconds * 1000, 1), "audio_s": round(audio_s, 2), "rtf": round(seconds / audio_s, 4),
            "peak_gib": peak, **extra}


def batch_row(seconds: float, lengths_s: np.ndarray, peak: float | None) -> dict:
    audio_s = float(lengths_s.sum())
    return {"ms": round(seconds * 1000, 1), "audio_s": round(audio_s, 1),
            "audio_s_per_gpu_s": round(audio_s / seconds, 1), "peak_gib": peak}


def set_f5_attention(cfm, backend: str, masked: bool) -> None:
    """F5-TTS's per-layer switches (``AttnProcessor.attn_backend`` / ``attn_mask_enabled``), read at each call."""
    for block in cfm.transformer.transformer_blocks:
        block.attn.processor.attn_backend, block.attn.processor.attn_mask_enabled = backend, masked


def worker_numerics(numerics: dict, name: str, mel: torch.Tensor, audio: np.ndarray, reference: dict) -> None:
    """The worker's sampler and pipeline outputs against F5-TTS's SDPA path (``reference``), under ``name``."""
    numerics["sampler"][f"worker_{name}_vs_f5_sdpa"] = mean_rel_diff(mel, reference["mel"])
    numerics["pipeline"][f"worker_{name}_vs_f5_sdpa"] = (
        mean_rel_diff(torch.from_numpy(audio), reference["audio"]) if len(audio) == len(reference["audio"])
        else f"lengths differ: {len(audio)} vs {len(reference['audio'])} samples")


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="F5TTS_v1_Base", help="tiny-random with --device cpu: a smoke run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--warm-ups", type=int, default=2)
    parser.add_argument("--mixed", type=int, default=16, help="requests in the mixed-length batch")
    parser.add_argument("--json")
    args = parser.parse_args()
    device, nfe, runs = args.device, args.nfe, args.runs
    cuda = device.startswith("cuda")
    batch_seconds = np.linspace(3, 15, args.mixed)  # the mixed-length batch
    batch_key, batch_runs = f"batch{args.mixed}_mixed", max(min(2, runs), runs // 2)

    def timed(fn, n=runs):
        return common.timed(fn, n, device, warm_ups=args.warm_ups)

    from f5_worker.attention_choice import AttentionChoice
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
    from f5_worker.engine.models import ModelFiles, model_arch
    from f5_worker.engine.sampler import SampleRequest, SamplingConfig
    from f5_worker.engine.text import convert_char_to_pinyin, list_str_to_idx

    from f5_worker import fa4

    # FlashAttention-4 (where flash-attn-4 is on the path, bench/gpu.sh synthesis-fa4): the worker only, with it
    # for unmasked batches as the worker chooses it; F5-TTS has no such backend, so its rows are not repeated.
    backends = ["sdpa"] + (["flash_attn"] if flash_attn_available() else []) + (["fa4"] if fa4.installed() else [])
    if "fa4" in backends:
        fa4.make_importable()
    f5 = f5_reference()  # after flash-attn is importable: F5-TTS's attention looks for it once, at import
    arch = model_arch(args.model)
    results: dict = {**environment(device, args.model), "nfe": nfe, "ref_s": REF_S, "gen_s": GEN_S, "runs": runs,
                     "warm_ups": args.warm_ups, "backends": {}}
    ref_frames, gen_frames = int(REF_S * SR) // HOP, int(GEN_S * SR) // HOP
    total_frames = ref_frames + gen_frames  # 1405: as ../shared/gpu/README.md's baseline
    results["flops_per_synthesis"] = synthesis_flops(arch, total_frames, nfe)
    if cuda:
        results["matmul_fp16_tflops"] = round(matmul_tflops(device), 1)
        results["floor_ms"] = round(results["flops_per_synthesis"] / (results["matmul_fp16_tflops"] * 1e12) * 1000, 2)
    rng = np.random.default_rng(0)
    ref = torch.from_numpy((0.1 * rng.standard_normal(int(REF_S * SR))).astype(np.float32))[None]
    texts = [REF_TEXT + GEN_TEXT[: int(len(GEN_TEXT) * s / 15)] for s in batch_seconds]
    batch_frames = [ref_frames + int(s * SR / HOP) for s in batch_seconds]
    config = SamplingConfig(steps=nfe, cfg_strength=2.0, sway_sampling_coef=-1.0)
    params = SynthesisParams(nfe_step=nfe, cfg_strength=2.0, sway_sampling_coef=-1.0, seed=0)
    reference: dict = {}  # F5-TTS's SDPA outputs: what every other path is compared with
    numerics: dict = {"sampler": {}, "pipeline": {}}

    for backend in backends:
        f5_name = F5_NAMES[backend]
        row: dict = {}
        why = f"bench/synthesis.py: {backend} for both"
        attention = (AttentionChoice(backend, backend, why, why) if backend != "fa4" else
                     AttentionChoice("fa4", "sdpa", "bench/synthesis.py: fa4 unmasked", "bench/synthesis.py: sdpa"))
        engine = Engine(EngineConfig(model=args.model, files=ModelFiles(), device=device, attention=attention))
        engine.warm_up()
        model, dtype = engine.model, engine.dtype
        vocab = model.vocab_char_map
        with torch.inference_mode():
            cond = model.mel_spec(ref.to(device)).permute(0, 2, 1)[0].to(dtype)  # (469, 100): the reference's mel
        ids = list_str_to_idx(convert_char_to_pinyin([REF_TEXT + GEN_TEXT]), vocab)[0]
        batch_ids = list_str_to_idx(convert_char_to_pinyin(texts), vocab)  # (16, tokens), -1 padded

        # -- the worker: its sampler (on the batcher's thread, which owns it), its whole pipeline, a masked batch
        single = [SampleRequest(cond, ids, total_frames, seed=0)]
        mixed = [SampleRequest(cond, t[t != -1], n, seed=i) for i, (t, n) in enumerate(zip(batch_ids, batch_frames))]
        sample = lambda requests: engine.batcher.call(lambda: engine.sampler.sample(requests, config))  # noqa: E731
        seconds, peak = timed(lambda: sample(single))
        row["worker_sampler"] = rtf_row(seconds, GEN_S, peak)
        worker_mel = sample(single)[0][cond.shape[0]:].float().cpu()
        voice = engine.reference(ref[0].numpy(), REF_TEXT)
        out = {}

        def worker():
            out["audio"] = engine.synthesize(voice, GEN_TEXT, params)

        seconds, peak = timed(worker)
        worker_audio = out["audio"]
        row["worker_pipeline"] = rtf_row(seconds, len(worker_audio) / SR, peak)
        engine_frames = len(worker_audio) // HOP + voice.audio.shape[-1] // HOP  # generated + reference, as sampled
        seconds, peak = timed(lambda: sample(mixed), batch_runs)
        row[f"worker_{batch_key}"] = batch_row(seconds, batch_seconds, peak)
        print(json.dumps({backend: "worker done"}), flush=True)
        if backend == "fa4":
            engine.close()
            del engine, model, sample, single, mixed
            free(device)
            worker_numerics(numerics, "fa4", worker_mel, worker_audio, reference)
            results["backends"]["fa4"] = row
            print(json.dumps({backend: row}), flush=True)
            continue

        # -- F5-TTS's own modules with the same weights, the worker's engine gone
        cfm, vocoder = f5.cfm_like(model), f5.vocos_like(engine.vocoder)
        engine.close()
        del engine, model, sample, single, mixed
        free(device)
        set_f5_attention(cfm, f5_name, masked=False)
        text = ids[None].to(device)

        def f5_sample(seed=None):
            with torch.inference_mode():
                mel, _ = cfm.sample(cond=cond[None], text=text, duration=total_frames, steps=nfe, cfg_strength=2.0,
                                    sway_sampling_coef=-1.0, seed=seed)
            return mel

        seconds, peak = timed(f5_sample)
        row["sampler"] = rtf_row(seconds, GEN_S, peak)
        if cuda:
            row["sampler"]["vs_floor"] = round(seconds * 1000 / results["floor_ms"], 1)
        f5_mel = f5_sample(seed=0)[0, cond.shape[0]:].float().cpu()

        def stock(seconds_fixed, seed=None):
            if seed is not None:
                torch.manual_seed(seed)  # infer_batch_process draws its noise from the global generators
            wave, _, _ = next(f5.utils_infer.infer_batch_process(
                (voice.audio, SR), voice.text, [GEN_TEXT], cfm, vocoder, progress=None, nfe_step=nfe, device=device,
                fix_duration=seconds_fixed))
            return wave

        seconds, peak = timed(lambda: stock(REF_S + GEN_S))
        row["stock_pipeline"] = rtf_row(seconds, GEN_S, peak)
        # At the engine's length (its frame bucket may round F5-TTS's estimate up): fix_duration gives exactly it.
        f5_audio = stock((engine_frames + 0.5) * HOP / SR, seed=0)

        set_f5_attention(cfm, f5_name, masked=True)
        lens = torch.full((len(texts),), cond.shape[0], device=device)

        def f5_batch():
            with torch.inference_mode():
                cfm.sample(cond=cond[None].expand(len(texts), -1, -1), text=batch_ids.to(device),
                           duration=torch.tensor(batch_frames, device=device), steps=nfe, cfg_strength=2.0,
                           sway_sampling_coef=-1.0, lens=lens)

        seconds, peak = timed(f5_batch, batch_runs)
        row[batch_key] = batch_row(seconds, batch_seconds, peak)
        del cfm, vocoder
        free(device)

        # -- numerics: everything against F5-TTS's SDPA path
        if backend == "sdpa":
            reference = {"mel": f5_mel, "audio": torch.from_numpy(f5_audio)}
        else:
            numerics["sampler"][f"f5_{f5_name}_vs_f5_sdpa"] = mean_rel_diff(f5_mel, reference["mel"])
            numerics["pipeline"][f"f5_{f5_name}_vs_f5_sdpa"] = mean_rel_diff(torch.from_numpy(f5_audio),
                                                                             reference["audio"])
        worker_numerics(numerics, f5_name, worker_mel, worker_audio, reference)
        results["backends"][f5_name] = row
        print(json.dumps({backend: row}), flush=True)

    results["numerics_mean_rel_diff"] = {kind: {k: float(f"{v:.3g}") if isinstance(v, float) else v
                                                for k, v in values.items()} for kind, values in numerics.items()}
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
