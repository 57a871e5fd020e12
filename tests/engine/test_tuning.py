"""Choosing the batch size and the request lengths from measured step times (the measurements run on the GPU:
bench/; here stand-in samplers)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from f5_worker.engine.tuning import BatchTiming, choose_batch

GIB = 1024**3


def timings(*rows):
    return [BatchTiming(batch, seconds, int(gib * GIB)) for batch, seconds, gib in rows]


def test_the_smallest_batch_near_the_best_throughput_wins():
    # throughput (requests per step-second): 1 -> 20, 8 -> 100, 16 -> 128, 32 -> 133
    measured = timings((1, 0.05, 1), (8, 0.08, 4), (16, 0.125, 8), (32, 0.24, 16))
    choice = choose_batch(measured, free_bytes=80 * GIB)
    assert choice.batch == 16 and "96%" in choice.why


def test_batches_that_do_not_fit_in_memory_are_never_chosen():
    measured = timings((1, 0.05, 1), (8, 0.08, 4), (16, 0.125, 8), (32, 0.24, 16))
    assert choose_batch(measured, free_bytes=10 * GIB).batch == 8  # 70% of 10 GiB holds batch 8 only


def test_nothing_fits_means_one_at_a_time():
    choice = choose_batch(timings((2, 0.1, 9)), free_bytes=10 * GIB)
    assert choice.batch == 1 and "fits" in choice.why
    assert choose_batch([], free_bytes=GIB).batch == 1


def test_a_tuning_record_survives_the_volume_and_a_damaged_one_is_ignored(tmp_path):
    from f5_worker.engine.tuning import TuningRecord, tuning_key

    key = tuning_key(gpu="NVIDIA H100 80GB HBM3", torch="2.11.0+cu130", model="F5TTS_v1_Base")
    assert key == tuning_key(model="F5TTS_v1_Base", torch="2.11.0+cu130", gpu="NVIDIA H100 80GB HBM3")
    assert key != tuning_key(gpu="NVIDIA A100-SXM4-80GB", torch="2.11.0+cu130", model="F5TTS_v1_Base")
    record = TuningRecord(16, "batch 16: 98% of the best", split_mixed=True, mixed_policy="equal-length groups",
                          frame_offset=2, frame_offset_why="1406 frames: 3.40 ms per step, against 3.69 at 1408",
                          attention_path="cudnn_ragged", attention_path_why="1418 frames: ...")
    path = tmp_path / "tuning" / f"{key}.json"
    record.save(path)
    assert TuningRecord.load(path) == record
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left beside it
    path.write_text('{"batch": 0, "batch_why": "", "split_mixed": false, "mixed_policy": "", "frame_offset": 0, '
                    '"frame_offset_why": "", "attention_path": "torch", "attention_path_why": ""}')
    assert TuningRecord.load(path) is None
    path.write_text('{"batch": 8, "batch_why": "", "split_mixed": false, "mixed_policy": "", "frame_offset": 0, '
                    '"frame_offset_why": "", "attention_path": "anything", "attention_path_why": ""}')
    assert TuningRecord.load(path) is None  # only a path the attention knows
    path.write_text('{"batch": 8, "batch_why": "", "split_mixed": false, "mixed_policy": "", "frame_offset": 0, '
                    '"frame_offset_why": ""}')
    assert TuningRecord.load(path) is None  # an older worker's record: no attention path, so measured again
    path.write_text("{not json")
    assert TuningRecord.load(path) is None
    assert TuningRecord.load(tmp_path / "absent.json") is None


@pytest.mark.parametrize("bucket, offset", [(16, 0), (16, 2), (16, 14), (1, 0)])
@given(frames=st.integers(1, 20_000))
def test_bucketed_lengths_are_the_nearest_of_the_bucket_phase_at_or_above(bucket, offset, frames):
    from f5_worker.engine.tuning import bucketed

    got = bucketed(frames, bucket, offset)
    assert frames <= got < frames + bucket and (got + offset) % bucket == 0


def test_the_phase_fastest_over_several_buckets_sets_the_frame_offset(monkeypatch):
    """A stand-in sampler shaped like the H200's measurements: up to 1408 frames every phase runs alike but
    16 k (offset 0) a little faster; from 1409 on the multiples of 8 are slow. One bucket below 1408 would pick
    offset 0, which is slow above it; over four buckets a phase that is never a multiple of 8 wins."""
    import time

    import torch

    from f5_worker.engine.tuning import TYPICAL_FRAMES, choose_frame_offset

    class Sampler:
        device = "cpu"
        lengths: list[int] = []
        forgotten: list[int] = []

        def forget_graph(self, batch, frames, cfg_strength):
            self.forgotten.append(frames)

        def sample(self, requests, config):
            frames = requests[0].frames
            self.lengths.append(frames)
            if frames <= 1408:
                time.sleep(0.004 if frames % 16 == 0 else 0.010)
            else:
                time.sleep(0.040 if frames % 8 == 0 else 0.010)

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    sampler = Sampler()
    steps = choose_frame_offset(sampler, torch.zeros(4, 100), torch.ones(8, dtype=torch.long), 16, steps=1, runs=1)
    yields = 0
    try:
        while True:
            next(steps)
            yields += 1
    except StopIteration as done:
        offset, why = done.value
    assert offset % 8 != 0 and why.startswith(f"lengths 16 k - {offset}: ") and "1377-1440 frames" in why
    assert sorted(set(sampler.lengths)) == sorted(top - o for top in (1392, 1408, 1424, 1440) for o in range(0, 16, 2))
    assert yields == 2 * 8 * 4  # after each capture and each measurement: a request waits for one at most
    assert not {top - offset for top in (1392, 1408, 1424, 1440)} & set(sampler.forgotten)  # the chosen graphs stay
    assert 1408 - 16 < TYPICAL_FRAMES <= 1408  # the buckets: the typical request's, one below, two above


def test_the_frame_offset_is_measured_on_the_real_sampler_and_its_graph_path(monkeypatch):
    """The measurement's own calls, on the tiny model's sampler with its graph path (stand-in captures)."""
    from f5_worker.engine.tuning import choose_frame_offset

    sampler, cond, text = tiny_sampler_with_graphs(monkeypatch)
    steps = choose_frame_offset(sampler, cond, text, 4, steps=1, runs=1)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        offset, why = done.value
    assert offset in (0, 2) and "of 4 buckets" in why  # (the tiny model's times on the CPU: either)
    kept = sorted(frames for _, frames, _ in sampler._graphs)
    assert kept == [top - offset for top in (1404, 1408, 1412, 1416)]  # the other phase's graphs dropped


def tiny_sampler_with_graphs(monkeypatch):
    """The tiny model's real sampler on its graph path (stand-in captures on the CPU), and stand-in inputs."""
    import torch

    from f5_worker.engine import graphs
    from f5_worker.engine.sampler import Sampler
    from f5_worker.engine.tuning import stand_in_inputs
    from support.engine import tiny_engine

    from .test_graphs import stand_in_capture

    monkeypatch.setattr(graphs, "capture", stand_in_capture)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    model = tiny_engine().model
    sampler = Sampler(model, cuda_graphs=False, max_graphs=8)
    sampler.cuda_graphs = True
    return sampler, *stand_in_inputs(model.num_channels, "cpu", torch.float32)


def _run(steps):
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value


class _TimedSampler:
    """A stand-in sampler: ms per step by (backend, batch size), equal samples unless told otherwise."""

    device = "cpu"
    cuda_graphs = True

    def __init__(self, ms: dict, differ: bool = False):
        self.ms, self.differ = ms, differ
        self.backends = {"single": "torch", "batch": "flash_attn"}

    def set_backends(self, backends):
        self.backends = {**self.backends, **backends}

    def sample(self, requests, config):
        import time

        import torch

        backend = self.backends["single"]
        time.sleep(self.ms.get((backend, len(requests)), 0.0) / 1000 * config.steps)
        value = 2.0 if self.differ and backend == "cudnn_ragged" else 1.0
        return [torch.full((r.frames, 4), value) for r in requests]


@pytest.mark.parametrize("ragged_ms, chosen", [
    ({1: 10, 8: 40}, "cudnn_ragged"),  # faster in batches, no slower alone
    ({1: 30, 8: 40}, "torch"),         # faster in batches, slower alone
    ({1: 10, 8: 79}, "torch"),         # within 2% in batches: not worth a second path
])
def test_the_variable_length_attention_is_chosen_when_measured_faster(monkeypatch, ragged_ms, chosen):
    import torch

    from f5_worker.engine.tuning import choose_attention_path

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    ms = {("torch", 1): 20, ("torch", 8): 80, **{("cudnn_ragged", b): v for b, v in ragged_ms.items()}}
    sampler = _TimedSampler(ms)
    path, why = _run(choose_attention_path(sampler, torch.zeros(4, 100), torch.ones(8, dtype=torch.long), 120,
                                           ("single",), steps=1, runs=1))
    assert path == chosen and why.startswith("120 frames, ms per step at batch 1 and 8: dense ")
    assert sampler.backends == {"single": chosen, "batch": "flash_attn"}  # flash-attn's mode untouched
    assert sampler.cuda_graphs  # (the check ran eagerly; graphs back on)


def test_the_variable_length_attention_is_refused_when_it_samples_otherwise(monkeypatch):
    import torch

    from f5_worker.engine.tuning import choose_attention_path

    sampler = _TimedSampler({}, differ=True)
    steps = choose_attention_path(sampler, torch.zeros(4, 100), torch.ones(8, dtype=torch.long), 120, ("single",))
    path, why = _run(steps)
    assert path == "torch" and why == "cuDNN's variable-length path samples otherwise: mean relative difference 1.00e+00"
    assert sampler.backends["single"] == "torch"


def test_without_cudnn_the_dense_attention_stays_on_the_real_sampler(monkeypatch):
    """On the CPU the variable-length op does not exist: the real sampler's check fails, and SDPA's dense path
    stays, with the reason."""
    import torch

    from f5_worker.engine.nn import attention
    from f5_worker.engine.sampler import Sampler
    from f5_worker.engine.tuning import choose_attention_path, stand_in_inputs
    from support.engine import tiny_engine

    monkeypatch.setattr(attention, "REFUSED", {})
    model = tiny_engine().model
    sampler = Sampler(model, cuda_graphs=False)
    cond, text = stand_in_inputs(model.num_channels, "cpu", torch.float32)
    path, why = _run(choose_attention_path(sampler, cond[:20], text[:10], 40, ("single", "batch")))
    assert path == "torch" and why.startswith("cuDNN's variable-length path failed: ")
    assert dict(sampler.backends) == {"single": "torch", "batch": "torch"}


def test_the_variable_length_attention_measured_on_the_real_sampler(monkeypatch):
    """The whole measurement on the tiny model's sampler, its graph path included (stand-in captures), with
    cuDNN's variable-length call stood in for by its semantics: the paths sample alike, and one is chosen."""
    import torch
    import torch.nn.functional as F

    from f5_worker.engine.nn import attention
    from f5_worker.engine.tuning import choose_attention_path

    def cudnn_varlen(q_rows, k_rows, v_rows, starts, longest):
        bounds = starts.tolist()
        return torch.cat([F.scaled_dot_product_attention(*(t[a:b].transpose(0, 1) for t in (q_rows, k_rows, v_rows)))
                          .transpose(0, 1) for a, b in zip(bounds, bounds[1:])])

    monkeypatch.setattr(attention, "_cudnn_varlen", cudnn_varlen)
    monkeypatch.setattr(attention, "REFUSED", {})
    sampler, cond, text = tiny_sampler_with_graphs(monkeypatch)
    path, why = _run(choose_attention_path(sampler, cond[:20], text[:10], 40, ("single",), steps=1, runs=1))
    assert path in ("torch", "cudnn_ragged")  # (the CPU's timings: either)
    assert float(why.rsplit("samples within ", 1)[1]) < 1e-6  # fp32, the same attention: rounding only
    assert sampler.backends["single"] == path


def test_a_capture_the_variable_length_path_cannot_make_leaves_the_dense_one(monkeypatch):
    import torch

    from f5_worker.engine.tuning import choose_attention_path

    class CaptureFails(_TimedSampler):
        def sample(self, requests, config):
            if self.cuda_graphs and self.backends["single"] == "cudnn_ragged":
                raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED")
            return super().sample(requests, config)

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    sampler = CaptureFails({})
    path, why = _run(choose_attention_path(sampler, torch.zeros(4, 100), torch.ones(8, dtype=torch.long), 120,
                                           ("single",), steps=1, runs=1))
    assert (path, why) == ("torch", "cudnn_ragged at batch 1 failed: RuntimeError: CUDNN_STATUS_NOT_SUPPORTED")
    assert sampler.backends["single"] == "torch"
