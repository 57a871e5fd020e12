#!/usr/bin/env python3
"""Does cuDNN run attention at lengths between multiples of 128 frames fast when its graph is built once, with the
keys' true length given as a padding mask (seq_len) over storage padded to a multiple of 128, or packed (ragged
offsets)? (issue 16; follows attention_lengths.py)

    python bench/probes/cudnn_frontend_attention.py [--json OUT]   # GPU machine: bash bench/gpu.sh probe-cudnn-frontend

PyTorch's cuDNN path runs 1424 keys at ~345 TFLOP/s against ~455 at 1408, and its variable-length call rebuilds
cuDNN's graph at every call (attention-lengths-h200.json). Here cuDNN's own Python API (nvidia-cudnn-frontend,
carried in .device/extra: not in the worker) builds each graph once and executes it: F5TTS_v1_Base's shape (16
heads of 64, fp16), 16 requests (32 sequences with guidance). Variants: dense at 1408, 1424, 1536 (q, k, v as the
projection lays them out); queries 1424 with keys and values stored 1536 long under a padding mask of 1424
(the storage's tail never read into the result); all three stored 1536 long, masked to 1424; packed rows with
ragged offsets. Each: µs per call (CUDA events, median of 5 runs of 20 calls), its mean relative difference from
float32 attention, and whether it replays from a CUDA graph (µs per replay).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, graph_replay_us, kernel_us, report  # noqa: E402

HEADS, DIM = 16, 64


class Sdpa:
    """One cuDNN SDPA graph, built once: ``run()`` executes it on the current stream."""

    def __init__(self, cudnn, handle, q, k, v, out, seq_len_q=None, seq_len_kv=None, offsets=None):
        self.cudnn, self.handle = cudnn, handle
        graph = cudnn.pygraph(io_data_type=cudnn.data_type.HALF, intermediate_data_type=cudnn.data_type.FLOAT,
                              compute_data_type=cudnn.data_type.FLOAT, handle=handle)
        tq, tk, tv = graph.tensor_like(q), graph.tensor_like(k), graph.tensor_like(v)
        pack = {tq: q, tk: k, tv: v}
        padded = seq_len_q is not None
        lq = lkv = None
        if padded:
            lq, lkv = graph.tensor_like(seq_len_q), graph.tensor_like(seq_len_kv)
            pack.update({lq: seq_len_q, lkv: seq_len_kv})
        if offsets is not None:
            offs = {name: graph.tensor_like(t) for name, t in offsets.items()}
            tq.set_ragged_offset(offs["q"]), tk.set_ragged_offset(offs["k"]), tv.set_ragged_offset(offs["v"])
            pack.update({offs[name]: offsets[name] for name in offsets})
        o, _stats = graph.sdpa(name="sdpa", q=tq, k=tk, v=tv, generate_stats=False, attn_scale=DIM ** -0.5,
                               use_padding_mask=padded, seq_len_q=lq, seq_len_kv=lkv)
        o.set_output(True).set_dim(list(out.shape)).set_stride(list(out.stride()))
        if offsets is not None:
            o.set_ragged_offset(offs["o"])
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()
        pack[o] = out
        self.graph, self.pack, self.out = graph, pack, out
        self.workspace = torch.empty(graph.get_workspace_size(), device="cuda", dtype=torch.uint8)

    def run(self):
        self.cudnn.set_stream(handle=self.handle, stream=torch.cuda.current_stream().cuda_stream)
        self.graph.execute(self.pack, self.workspace, handle=self.handle)
        return self.out


def rel_diff(out, q, k, v) -> float:
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    return round(float((out.float() - exact).abs().mean() / exact.abs().mean()), 6)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--batch", type=int, default=16, help="requests (twice as many sequences with guidance)")
    parser.add_argument("--lengths", default="1408,1424,1456")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a GPU")
    import cudnn

    handle = cudnn.create_handle()
    out: dict = {**environment("cuda", "F5TTS_v1_Base attention shape"), "cudnn_backend": cudnn.backend_version(),
                 "cudnn_frontend": getattr(cudnn, "__version__", "?"), "batch": args.batch, "us": {}}
    seqs = 2 * args.batch

    def record(key, make, q, k, v):
        try:
            sdpa = make()
            row = {"us": kernel_us(sdpa.run), "rel_diff_vs_fp32": rel_diff(sdpa.run(), q, k, v),
                   "graph_replay_us": graph_replay_us(sdpa.run)}
        except Exception as error:  # noqa: BLE001  refused is a result
            row = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        out["us"][key] = row
        print(key, row, flush=True)

    for frames in (int(n) for n in args.lengths.split(",")):
        padded = -(-frames // 128) * 128
        qkv = torch.randn(seqs, frames, 3, HEADS, DIM, device="cuda", dtype=torch.float16)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (seqs, heads, frames, dim) views
        dense_out = torch.empty(seqs, frames, HEADS, DIM, device="cuda", dtype=torch.float16).transpose(1, 2)
        record(f"{frames} frames, dense", lambda: Sdpa(cudnn, handle, q, k, v, dense_out), q, k, v)
        with torch.no_grad():
            out["us"][f"{frames} frames, PyTorch's cuDNN SDPA (reference)"] = {"us": kernel_us(
                lambda: F.scaled_dot_product_attention(q, k, v))}
        if padded == frames:
            continue
        lengths = torch.full((seqs, 1, 1, 1), frames, device="cuda", dtype=torch.int32)
        kv_store = torch.zeros(seqs, padded, 2, HEADS, DIM, device="cuda", dtype=torch.float16)
        kv_store[:, :frames] = qkv[:, :, 1:]
        kp, vp = (kv_store[:, :, i].transpose(1, 2) for i in range(2))
        record(f"{frames} frames, keys stored {padded}, padding mask",
               lambda: Sdpa(cudnn, handle, q, kp, vp, dense_out, lengths, lengths), q, k, v)
        all_store = torch.zeros(seqs, padded, 3, HEADS, DIM, device="cuda", dtype=torch.float16)
        all_store[:, :frames] = qkv
        qa, ka, va = (all_store[:, :, i].transpose(1, 2) for i in range(3))
        padded_out = torch.zeros(seqs, padded, HEADS, DIM, device="cuda", dtype=torch.float16).transpose(1, 2)

        def all_padded():
            sdpa = Sdpa(cudnn, handle, qa, ka, va, padded_out, lengths, lengths)
            sdpa.out = padded_out[:, :, :frames]
            return sdpa

        record(f"{frames} frames, all stored {padded}, padding mask", all_padded, q, k, v)
        packed = [t.transpose(1, 2).contiguous() for t in (q, k, v)]  # (seqs, frames, heads, dim), packed rows
        starts = (torch.arange(seqs + 1, device="cuda", dtype=torch.int64) * frames * HEADS * DIM).reshape(-1, 1, 1, 1)
        offsets = {"q": starts, "k": starts, "v": starts, "o": starts}
        ragged_out = torch.empty(seqs, frames, HEADS, DIM, device="cuda", dtype=torch.float16).transpose(1, 2)
        record(f"{frames} frames, packed rows, ragged offsets",
               lambda: Sdpa(cudnn, handle, *(t.transpose(1, 2) for t in packed), ragged_out, lengths, lengths,
                            offsets), q, k, v)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
