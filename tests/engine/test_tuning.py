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
                          frame_offset=2, frame_offset_why="1406 frames: 3.40 ms per step, against 3.69 at 1408")
    path = tmp_path / "tuning" / f"{key}.json"
    record.save(path)
    assert TuningRecord.load(path) == record
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left beside it
    path.write_text('{"batch": 0, "batch_why": "", "split_mixed": false, "mixed_policy": "", "frame_offset": 0, '
                    '"frame_offset_why": ""}')
    assert TuningRecord.load(path) is None
    path.write_text('{"batch": 8, "batch_why": "", "split_mixed": false, "mixed_policy": ""}')
    assert TuningRecord.load(path) is None  # an older worker's record: no frame offset, so measured again
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
    import torch

    from f5_worker.engine import graphs
    from f5_worker.engine.sampler import Sampler
    from f5_worker.engine.tuning import choose_frame_offset, stand_in_inputs
    from support.engine import tiny_engine

    from .test_graphs import stand_in_capture

    monkeypatch.setattr(graphs, "capture", stand_in_capture)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    model = tiny_engine().model
    sampler = Sampler(model, cuda_graphs=False, max_graphs=8)
    sampler.cuda_graphs = True
    cond, text = stand_in_inputs(model.num_channels, "cpu", torch.float32)
    steps = choose_frame_offset(sampler, cond, text, 4, steps=1, runs=1)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        offset, why = done.value
    assert offset in (0, 2) and "of 4 buckets" in why  # (the tiny model's times on the CPU: either)
    kept = sorted(frames for _, frames, _ in sampler._graphs)
    assert kept == [top - offset for top in (1404, 1408, 1412, 1416)]  # the other phase's graphs dropped
