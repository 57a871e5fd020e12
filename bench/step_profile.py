#!/usr/bin/env python3
"""Where one sampling step's GPU time goes, and what a compiled step would change (issue 16).

    python bench/step_profile.py [--batches 1,8] [--compile static,dynamic] [--json OUT]
    python bench/step_profile.py --model tiny-random --device cpu --batches 1 --json /tmp/p.json   # smoke

F5TTS_v1_Base size, random weights, fp16, cfg 2, 5 s reference + 10 s to generate (1406 frames), one Euler
step of the worker's sampler (``engine.sampler``), for B same-length requests (2B sequences with guidance):
- ``graph_step_ms``: the step replayed from its CUDA graph, median of 30 replays (CUDA events): what serving runs;
- ``profile``: one eager step under torch.profiler: GPU time and kernel count per kind of kernel (matmul,
  attention, convolution, layer norm, elementwise, ...) and the top kernels, so the share of the matrix
  products against everything between them is measured, not guessed;
- ``vocoder_ms`` / ``mel_ms``: the vocoder for one 10 s output, the mel of one 5 s reference;
- ``--kernels``: the same with the Triton kernels on (``DiT.use_kernels``): their first call (compilation),
  their difference from the eager step, the graph step and the profile; and the convolution kernel alone
  per block size;
- ``--fa4`` (with ``--kernels``; flash-attn-4 importable): the kernels' graph step and profile again with
  FlashAttention-4 for the attention, as the worker runs unmasked batches once its check passed;
- ``--frames N``: the step at N frames (1406 by default; the throughput benchmark's requests run at 1418-1420);
- ``--compile MODE``: the velocity under torch.compile (inductor; ``static`` shapes, or ``dynamic``: one
  compilation for every length), its compile time, the graph step, and its difference from the eager step.
  The inductor cache is wherever TORCHINDUCTOR_CACHE_DIR points: run twice on one directory to time a warm start.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import common
import torch
from common import environment

REF_FRAMES, FRAMES = 469, 1406
KINDS = (  # first match wins: cuDNN's attention kernels say "fprop", its convolutions "xmma"/"gemm"
    ("ours (Triton)", r"_conv_mish_kernel|_rotate_kernel|_residual_norm_kernel"),
    ("attention", r"fmha|flash|attention|sdpa|softmax"),
    ("convolution", r"conv|fprop|dgrad|depthwise|nhwcSlice"),
    ("rotation (complex product)", r"^mul_kernel_kernel$"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|sm90_|sm80_"),
    ("layer_norm", r"layer_norm|layernorm"),
    ("triton (compiled)", r"^triton_"),
    ("copy / cat", r"copy|cat_|CatArray"),
    ("reduction", r"reduce|norm"),
    ("elementwise", r"elementwise|vectorized|unrolled|pointwise"),
)


def kind_of(kernel: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, kernel, re.IGNORECASE):
            return kind
    return "other"


def device_events(prof) -> list[tuple[str, float, int]]:
    """(kernel name, self device µs, calls) of every device-side event of a profile."""
    rows = []
    for event in prof.key_averages():
        micros = getattr(event, "self_device_time_total", None)
        if micros is None:
            micros = getattr(event, "self_cuda_time_total", 0)
        if event.device_type == torch.autograd.DeviceType.CUDA and micros > 0:
            rows.append((event.key, micros, event.count))
    return rows


def profile_step(step, cuda: bool) -> dict:
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    step()
    common.sync("cuda" if cuda else "cpu")
    with torch.profiler.profile(activities=activities) as prof:
        step()
        common.sync("cuda" if cuda else "cpu")
    if not cuda:  # no device kernels: the top CPU operators say where eager time goes
        rows = sorted(((e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()), key=lambda r: -r[1])
        return {"top_cpu_ops": [{"op": k, "us": round(us, 1), "calls": n} for k, us, n in rows[:10]]}
    rows = device_events(prof)
    total = sum(us for _, us, _ in rows)
    kinds: dict[str, dict] = {}
    for name, us, calls in rows:
        entry = kinds.setdefault(kind_of(name), {"ms": 0.0, "kernels": 0})
        entry["ms"] += us / 1000
        entry["kernels"] += calls
    for entry in kinds.values():
        entry["ms"] = round(entry["ms"], 3)
        entry["share"] = round(entry["ms"] * 1000 / total, 3)
    top = sorted(rows, key=lambda r: -r[1])[:15]
    return {"kernel_ms": round(total / 1000, 3), "kernels": sum(n for _, _, n in rows),
            "by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["ms"])),
            "top": [{"kernel": k[:110], "kind": kind_of(k), "ms": round(us / 1000, 3), "calls": n} for k, us, n in top]}


def replay_ms(graph, runs: int = 30) -> float:
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return round(statistics.median(times), 3)


def replay_with_clock(graph) -> tuple[float, dict]:
    """``replay_ms`` with the clock those replays ran at (``common.GpuClocks``: throughput.py reports the same)."""
    with common.GpuClocks() as clocks:
        ms = replay_ms(graph)
    return ms, clocks.result


def sustained(graph, seconds: float, window_s: float = 1.0) -> list[dict]:
    """The graph replayed back to back for ``seconds``, as a serving GPU replays a batch's steps: per window of
    ``window_s``, ms per step (CUDA events around the window's replays) beside the SM clock and power, so a step
    timed in a short burst is read against the same step once the card sits at its power limit."""
    replay_ms(graph, runs=3)  # (warm)
    per_window = max(1, round(window_s * 1000 / replay_ms(graph, runs=3)))
    windows = []
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with common.GpuClocks() as clocks:
            start.record()
            for _ in range(per_window):
                graph.replay()
            end.record()
            end.synchronize()
        windows.append({"ms_per_step": round(start.elapsed_time(end) / per_window, 3), **clocks.result})
    return windows


def tunableop_step(eager, make_graph, seconds: float) -> dict:
    """The step with TunableOp on: ``eager()`` once with tuning on (each matmul shape's cuBLASLt algorithms timed,
    the fastest kept), then tuning off and ``make_graph()`` captured with the chosen algorithms, timed in a burst
    and for ``seconds`` back to back; the outputs against the untuned step's (same inputs)."""
    from torch.cuda import tunable

    untuned = eager().float()
    torch.cuda.synchronize()
    out: dict = {}
    tunable.enable(True)
    tunable.tuning_enable(True)
    tunable.set_filename(os.path.join(os.environ.get("OUT", "/tmp"), "tunableop_results%d.csv"))
    try:
        began = time.perf_counter()
        tuned = eager().float()
        torch.cuda.synchronize()
        out["tune_s"] = round(time.perf_counter() - began, 2)
        tunable.tuning_enable(False)
        out["mean_rel_diff_vs_untuned"] = float((tuned - untuned).abs().mean() / untuned.abs().mean())
        out["bit_equal_share"] = float((tuned == untuned).float().mean())
        out["results"] = [[str(v) for v in row] for row in tunable.get_results()]
        graph = make_graph()
        out["graph_step_ms"], out["graph_step_clocks"] = replay_with_clock(graph.graph)
        if seconds:
            out["sustained"] = sustained(graph.graph, seconds)
        del graph
    except Exception as error:  # noqa: BLE001  a probe: the failure is its result
        out["error"] = f"{type(error).__name__}: {error}"
    finally:
        tunable.tuning_enable(False)
        tunable.enable(False)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--compile", default="", help="comma-separated: static, dynamic")
    parser.add_argument("--kernels", action="store_true", help="also with the Triton kernels on")
    parser.add_argument("--fa4", action="store_true", help="with --kernels: also with FlashAttention-4's attention")
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--sustained", type=float, default=0.0,
                        help="with --fa4: the largest batch's FA4 step graph replayed back to back for this many "
                             "seconds, ms per step and clock per second")
    parser.add_argument("--tunableop", action="store_true",
                        help="with --fa4: then the largest batch again with PyTorch's TunableOp choosing each matmul's "
                             "cuBLASLt algorithm by measuring them (tuned eagerly, then captured; --sustained too)")
    parser.add_argument("--model", default="F5TTS_v1_Base", help="tiny-random with --device cpu: a smoke run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json")
    args = parser.parse_args()
    frames_here = args.frames
    device = args.device
    if args.fa4:
        from f5_worker import fa4

        fa4.make_importable()
    cuda = device.startswith("cuda")
    from f5_worker.engine import sampler as sampler_module
    from f5_worker.engine.models import ModelFiles, build_model, build_vocoder
    from f5_worker.engine.sampler import Sampler, SamplingConfig

    out: dict = {**environment(device, args.model), "frames": frames_here, "ref_frames": REF_FRAMES, "batches": {}}
    model = build_model(args.model, ModelFiles(), device=device)
    dit = model.transformer
    dtype = next(model.parameters()).dtype
    config = SamplingConfig()
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(0, 2000, (1, 160), generator=generator).to(device)

    def inputs(batch, frames=frames_here):
        g = torch.Generator().manual_seed(batch)
        x, cond = (torch.randn(batch, frames, 100, generator=g).to(device, dtype) for _ in range(2))
        cond[:, REF_FRAMES:] = 0
        tokens = text.expand(batch, -1)
        with torch.inference_mode():
            text_cond = dit.text_embed(tokens, seq_len=frames, drop_text=False)
            text_uncond = dit.text_embed(tokens, seq_len=frames, drop_text=True)
        return x, cond, text_cond, text_uncond

    def graph_for(sampler, batch, frames=frames_here):
        """The sampler's step graph for this shape, its inputs filled; (graph, seconds to make it)."""
        common.sync(device)
        began = time.perf_counter()
        with torch.inference_mode():
            graph = sampler._graph(batch, frames, config.cfg_strength)
        common.sync(device)
        made = time.perf_counter() - began
        x, cond, text_cond, text_uncond = inputs(batch, frames)
        with torch.inference_mode():
            graph.x.copy_(x)
            graph.inputs.copy_(dit.flow_inputs(x, cond, torch.cat((text_cond, text_uncond))))
            steps = graph.step_inputs  # every step at t = 0.5 with size 0: replays leave x as it is
            steps.conditionings.copy_(dit.time_conditioning(torch.tensor([0.5], device=device, dtype=dtype)))
            steps.sizes.zero_()
            steps.loaded = None
        return graph, made

    made_inputs = {}

    def eager_velocity(batch):
        if batch not in made_inputs:
            made_inputs[batch] = inputs(batch)
        x, cond, text_cond, text_uncond = made_inputs[batch]
        t = torch.tensor(0.5, device=device, dtype=dtype)
        with torch.inference_mode():
            return sampler_module.velocity(dit, x, cond, text_cond, text_uncond, t, None, config.cfg_strength)

    batches = [int(b) for b in args.batches.split(",")]
    reference = {}
    for batch in batches:
        row: dict = {}
        reference[batch] = eager_velocity(batch)
        if cuda:
            sampler = Sampler(model)
            graph, _ = graph_for(sampler, batch)
            row["graph_step_ms"] = replay_ms(graph.graph)
            del graph, sampler
        row["profile"] = profile_step(lambda: eager_velocity(batch), cuda)
        out["batches"][batch] = row
        print("batch", batch, {k: v for k, v in row.items() if k != "profile"},
              {k: v for k, v in row["profile"].items() if k not in ("top", "top_cpu_ops")}, flush=True)

    if args.kernels:
        from f5_worker.engine.nn import kernels

        row = {}
        began = time.perf_counter()
        dit.use_kernels(True)
        row["use_kernels_s"] = round(time.perf_counter() - began, 2)
        for batch in batches:
            began = time.perf_counter()
            got = eager_velocity(batch)
            common.sync(device)
            entry = {"first_call_s": round(time.perf_counter() - began, 2),
                     "max_rel_diff": float((got.float() - reference[batch].float()).abs().max()
                                           / reference[batch].float().abs().max()),
                     "mean_rel_diff": float((got.float() - reference[batch].float()).abs().mean()
                                            / reference[batch].float().abs().mean())}
            if cuda:
                sampler = Sampler(model)
                graph, made = graph_for(sampler, batch)
                entry["graph_made_s"] = round(made, 2)
                entry["graph_step_ms"], entry["graph_step_clocks"] = replay_with_clock(graph.graph)
                del graph, sampler
                x = made_inputs[batch][0].new_empty(2 * batch, frames_here, dit.dim).normal_()
                layer = dit.input_embed.conv_pos_embed.conv1d[0]
                entry["conv_ms"] = {}
                for block_s in (32, 64, 128):
                    for warps in (4, 8):
                        run = lambda: kernels.conv_mish(x, dit.input_embed.conv_pos_embed.kernel_weights[0],  # noqa: E731
                                                        layer.bias, block_s=block_s, num_warps=warps)
                        entry["conv_ms"][f"{block_s}x{warps}"] = round(common.timed(run, 20, device)[0] * 1000, 4)
                cudnn = lambda: layer(x.transpose(1, 2))  # noqa: E731  F5-TTS's layout, for scale
                entry["conv_ms"]["cudnn_conv1d"] = round(common.timed(cudnn, 20, device)[0] * 1000, 4)
            entry["profile"] = profile_step(lambda: eager_velocity(batch), cuda)
            if args.fa4:  # (the sampler sets the attention before it samples; graph_for captures as it is set)
                dit.set_attention("fa4", masked=False)
                sampler = Sampler(model, backends={"single": "fa4", "batch": "torch"})
                graph, made = graph_for(sampler, batch)
                entry["fa4_graph_step_ms"], entry["fa4_graph_step_clocks"] = replay_with_clock(graph.graph)
                if args.sustained and batch == max(batches):
                    entry["fa4_sustained"] = sustained(graph.graph, args.sustained)
                    print("fa4 sustained", batch, entry["fa4_sustained"], flush=True)
                del graph, sampler
                if args.tunableop and batch == max(batches):
                    entry["tunableop"] = tunableop_step(lambda: eager_velocity(batch), lambda: graph_for(
                        Sampler(model, backends={"single": "fa4", "batch": "torch"}), batch)[0], args.sustained)
                    print("tunableop", batch, entry["tunableop"], flush=True)
                entry["fa4_profile"] = profile_step(lambda: eager_velocity(batch), cuda)
                dit.set_attention("torch", masked=False)
            row[batch] = entry
            print("kernels", batch, {k: v for k, v in entry.items() if k != "profile"},
                  {k: v for k, v in entry["profile"].items() if k not in ("top", "top_cpu_ops")}, flush=True)
            if args.fa4:
                print("fa4", batch, {k: v for k, v in entry["fa4_profile"].items() if k not in ("top", "top_cpu_ops")},
                      flush=True)
        dit.use_kernels(False)
        out["kernels"] = row

    vocoder = build_vocoder(args.model, ModelFiles(), device=device)
    mel = torch.randn(1, 100, FRAMES - REF_FRAMES, generator=generator).to(device)
    audio = torch.randn(1, REF_FRAMES * 256, generator=generator).to(device)
    with torch.inference_mode():
        out["vocoder_ms"] = round(common.timed(lambda: vocoder.decode(mel), 10, device)[0] * 1000, 3)
        out["mel_ms"] = round(common.timed(lambda: model.mel_spec(audio), 10, device)[0] * 1000, 3)
    print("vocoder_ms", out["vocoder_ms"], "mel_ms", out["mel_ms"], flush=True)

    plain_velocity, plain_flow = sampler_module.velocity, sampler_module.flow_rows
    for mode in [m for m in args.compile.split(",") if m]:
        torch._dynamo.reset()
        began = time.perf_counter()
        sampler_module.velocity = torch.compile(plain_velocity, dynamic=mode == "dynamic")  # the eager step's
        sampler_module.flow_rows = torch.compile(plain_flow, dynamic=mode == "dynamic")  # the graph step's
        row = {"wrap_s": round(time.perf_counter() - began, 2)}
        try:
            sampler = Sampler(model, cuda_graphs=cuda)
            for batch in batches:
                began = time.perf_counter()
                got = eager_velocity(batch)  # compiles (or reuses) for this shape
                common.sync(device)
                entry = {"first_call_s": round(time.perf_counter() - began, 2),
                         "max_rel_diff": float((got.float() - reference[batch].float()).abs().max()
                                               / reference[batch].float().abs().max())}
                if cuda:
                    graph, made = graph_for(sampler, batch)
                    entry["graph_made_s"] = round(made, 2)
                    entry["graph_step_ms"] = replay_ms(graph.graph)
                    began = time.perf_counter()
                    graph_for(sampler, batch, FRAMES + 16)  # a new length: recompiles unless dynamic
                    entry["new_length_graph_s"] = round(time.perf_counter() - began, 2)
                row[batch] = entry
                print("compile", mode, batch, entry, flush=True)
        except Exception as error:  # noqa: BLE001  a compile failure is a result too
            row["error"] = f"{type(error).__name__}: {str(error)[:400]}"
            print("compile", mode, "failed:", row["error"], flush=True)
        finally:
            sampler_module.velocity, sampler_module.flow_rows = plain_velocity, plain_flow
        out[f"compile_{mode}"] = row

    common.report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
