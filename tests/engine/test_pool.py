"""Several GPUs, one worker: a pool of tiny-random engines on the CPU stands in for one engine per GPU.

The pool does not care what its devices are, so two or three "cpu" engines prove what matters on
a multi-GPU machine: a request goes to the least loaded engine and all its chunks stay there, one
engine failing (to load, or its GPU thread stopping) leaves the others serving with the reason
reported, the flash-attn verdict switches every engine, and the batch sizes add up.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from f5_worker.attention_choice import AttentionChoice
from f5_worker.engine.batcher import Closed
from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
from f5_worker.engine.pool import EnginePool, devices_for, load_engines, select_gpus
from f5_worker.errors import ConfigError
from f5_worker.settings import Settings
from support.engine import tone

CPU = EngineConfig(model="tiny-random", device="cpu")
FAST = SynthesisParams(nfe_step=2, seed=1)
LONG_TEXT = " ".join(f"Sentence number {i} is spoken here, with a few more words." for i in range(12))


def cpu_pool(n: int = 2, make=Engine) -> EnginePool:
    return EnginePool.load(CPU, ["cpu"] * n, make=make)


def record_batches(pool: EnginePool) -> list[tuple[int, int]]:
    """(engine index, chunk seed) for every chunk each engine samples, in order."""
    seen: list[tuple[int, int]] = []
    for index, engine in enumerate(pool.slots):
        real = engine.sampler.sample

        def sample(requests, config, index=index, real=real):
            seen.extend((index, r.seed) for r in requests)
            return real(requests, config)

        engine.sampler.sample = sample
    return seen


@pytest.fixture(scope="module")
def pool():
    pool = cpu_pool(2)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def voice(pool):
    return pool.reference(tone(2.0), "A steady tone.")


class TestSelectGpus:
    @pytest.mark.parametrize("spec, visible, expected", [
        ("all", 4, (0, 1, 2, 3)), ("all", 0, ()), ("2", 4, (0, 1)), ("8", 2, (0, 1)),
        ("0,2", 4, (0, 2)), ("1,", 2, (1,)),
    ])
    def test_selection(self, spec, visible, expected):
        assert select_gpus(spec, visible) == expected

    def test_an_index_not_visible_is_named(self):
        with pytest.raises(ConfigError, match=r"F5_WORKER_GPUS='0,3' names GPU 3, but 2 are visible"):
            select_gpus("0,3", 2)

    @pytest.mark.parametrize("spec, visible, expected", [
        ("all", 0, [None]), ("all", 1, [None]), ("1", 8, [None]),  # one GPU: the engine's default device, as always
        ("all", 2, ["cuda:0", "cuda:1"]), ("1,", 2, ["cuda:1"]), ("1,3", 4, ["cuda:1", "cuda:3"]),
    ])
    def test_devices(self, spec, visible, expected):
        assert devices_for(spec, visible) == expected

    @pytest.mark.parametrize("raw, value", [("ALL", "all"), ("2", "2"), ("0, 2", "0,2"), ("1,", "1,"), ("", "all")])
    def test_setting(self, raw, value):
        assert Settings.from_env({"F5_WORKER_GPUS": raw}).gpus == value

    @pytest.mark.parametrize("raw", ["0", "two", "0,0", "-1", "1,a"])
    def test_bad_setting_is_named(self, raw):
        with pytest.raises(ConfigError, match="F5_WORKER_GPUS"):
            Settings.from_env({"F5_WORKER_GPUS": raw})


def test_one_device_is_a_plain_engine():
    engine = load_engines(CPU, ["cpu"])
    try:
        assert type(engine) is Engine and engine.device == "cpu"
    finally:
        engine.close()


def test_concurrency_is_the_sum_of_the_batches(pool):
    assert [e.batcher.max_batch for e in pool.engines] == [4, 4]
    assert pool.batcher.max_batch == 8 and pool.batcher.alive
    assert pool.info()["max_batch"] == 8


def test_a_request_goes_to_the_least_loaded_engine(pool, voice):
    seen = record_batches(pool)
    held, gate = pool.slots[0], threading.Event()
    real = held.sampler.sample
    started = threading.Event()

    def gated(requests, config):
        started.set()
        gate.wait(60)
        return real(requests, config)

    held.sampler.sample = gated
    try:
        with ThreadPoolExecutor(3) as threads:
            first = threads.submit(pool.synthesize, voice, "Held on the first engine.",
                                   SynthesisParams(nfe_step=2, seed=100))
            assert started.wait(30)  # ties go to the lowest index
            second = pool.synthesize(voice, "Placed on the other.", SynthesisParams(nfe_step=2, seed=200))
            third = pool.synthesize(voice, "And this one too.", SynthesisParams(nfe_step=2, seed=300))
            assert not first.done() and len(second) and len(third)
            status = pool.info()["engines"]
            assert status[0]["queue"]["requests_in_flight"] == 1 and status[1]["queue"]["requests_in_flight"] == 0
            gate.set()
            assert len(first.result(60))
    finally:
        gate.set()
        held.sampler.sample = real
    assert {seed: index for index, seed in seen} == {100: 0, 200: 1, 300: 1}
    assert [seed for _, seed in seen][-1] == 100  # the other two were done while the first engine was held


def test_a_requests_chunks_stay_on_one_engine(pool, voice):
    seen = record_batches(pool)
    chunks = len(pool.chunks(voice, LONG_TEXT, 1.0))
    assert chunks > 2
    with ThreadPoolExecutor(4) as threads:
        list(threads.map(lambda seed: pool.synthesize(voice, LONG_TEXT, SynthesisParams(nfe_step=2, seed=seed)),
                         (1000, 2000, 3000, 4000)))
    by_request: dict[int, set[int]] = {}
    for index, seed in seen:
        by_request.setdefault(seed // 1000, set()).add(index)
    assert sorted(by_request) == [1, 2, 3, 4] and all(len(engines) == 1 for engines in by_request.values())
    assert len(seen) == 4 * chunks
    assert {next(iter(e)) for e in by_request.values()} == {0, 1}  # both engines served


def test_use_attention_switches_every_engine(pool):
    flash = AttentionChoice("flash_attn", "flash_attn", "test", "test")
    before = pool.attention
    try:
        pool.use_attention(flash)
        assert [e.attention for e in pool.engines] == [flash, flash] and pool.attention == flash
        assert all(dict(e.sampler.backends) == {"single": "flash_attn", "batch": "flash_attn"} for e in pool.engines)
        pool.attention = AttentionChoice("flash_attn", "flash_attn", "a new reason", "a new reason")
        assert {e.attention.single_why for e in pool.engines} == {"a new reason"}
    finally:
        pool.use_attention(before)
    assert [e.attention for e in pool.engines] == [before, before]


def test_info_names_each_engine(pool):
    info = pool.info()
    assert info["model"] == "tiny-random" and info["device"] == "cpu,cpu"
    assert [(e["index"], e["device"], e["state"]) for e in info["engines"]] == [(0, "cpu", "serving"),
                                                                              (1, "cpu", "serving")]
    for entry in info["engines"]:
        assert entry["attention"]["single"] == "sdpa" and entry["pending"] == []
        assert set(entry["queue"]) == {"chunks_queued", "requests_in_flight", "expected_wait_s"}


def test_an_engine_failing_to_load_leaves_the_others_serving():
    calls = []

    def make(config):
        calls.append(config.device)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: uncorrectable ECC error encountered")
        return Engine(config)

    pool = cpu_pool(3, make=make)
    try:
        assert len(pool.engines) == 2 and pool.batcher.max_batch == 8
        failed = [e for e in pool.info()["engines"] if e["state"] == "failed"]
        assert len(failed) == 1 and "uncorrectable ECC error" in failed[0]["error"]
        voice = pool.reference(tone(2.0), "A steady tone.")
        assert len(pool.synthesize(voice, "Still serving.", FAST))
    finally:
        pool.close()


def test_every_engine_failing_to_load_raises():
    def make(config):
        raise RuntimeError("no GPU answers")

    with pytest.raises(RuntimeError, match="no GPU answers"):
        cpu_pool(2, make=make)


def test_a_stopped_gpu_thread_leaves_the_others_serving():
    pool = cpu_pool(2)
    try:
        voice = pool.reference(tone(2.0), "A steady tone.")
        pool.slots[0].batcher.close()
        assert pool.batcher.alive and pool.engines == [pool.slots[1]] and pool.batcher.max_batch == 4
        assert len(pool.synthesize(voice, "Served by the other GPU.", FAST))
        entry = pool.info()["engines"][0]
        assert entry["state"] == "failed" and entry["error"] == "its GPU thread stopped"
        pool.slots[1].batcher.close()
        assert not pool.batcher.alive
        with pytest.raises(Closed):
            pool.synthesize(voice, "Nobody serves.", FAST)
    finally:
        pool.close()


def test_an_engine_closed_after_placement_passes_the_request_on(monkeypatch):
    pool = cpu_pool(2)
    try:
        voice = pool.reference(tone(2.0), "A steady tone.")
        closing = pool.slots[0]
        real = closing.stream

        def closed_on_submit(*args, **kwargs):  # the engine's thread stops between placement and submission
            closing.batcher.close()
            return real(*args, **kwargs)

        monkeypatch.setattr(closing, "stream", closed_on_submit)
        assert len(pool.synthesize(voice, "Placed twice.", FAST))
        assert pool._in_flight == [0, 0]
    finally:
        pool.close()
