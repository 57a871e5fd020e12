"""Choosing the batch size from measured step times (the measurement itself runs on the GPU: bench/)."""

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
    record = TuningRecord(16, "batch 16: 98% of the best", split_mixed=True, mixed_policy="equal-length groups")
    path = tmp_path / "tuning" / f"{key}.json"
    record.save(path)
    assert TuningRecord.load(path) == record
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left beside it
    path.write_text('{"batch": 0, "batch_why": "", "split_mixed": false, "mixed_policy": ""}')
    assert TuningRecord.load(path) is None
    path.write_text("{not json")
    assert TuningRecord.load(path) is None
    assert TuningRecord.load(tmp_path / "absent.json") is None
