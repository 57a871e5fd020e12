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
