"""Ready first: the worker serves before flash-attn is verified, then switches between batches.

In-process workers on the tiny-random model, with a stated GPU runtime and stand-in flash-attn
wheels in a local mirror (tests/lib/support/wheels.py: they compute with SDPA, so a switch
must leave the audio as it was). The verification child is real; the GATED wheel's import
waits for a file, so the test decides how long verification takes.
"""

from __future__ import annotations

import base64
import io
import sys

import numpy as np
import pytest
import soundfile as sf

from f5_worker.worker import Worker
from support.engine import tone, wav_bytes
from support.runtime import gpu_fingerprint
from support.wheels import Variant, upstream_name, write_wheel

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated_imports")]

VERSION = "2.8.3.post2"
FP = gpu_fingerprint()
JOB = {"text": "The same words before and after the switch.", "ref_audio": base64.b64encode(wav_bytes(tone(2.0))).decode(),
       "ref_text": "A steady tone.", "seed": 5, "nfe_step": 4}


@pytest.fixture
def worker_with_mirror(make_settings, tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "flash_attn", raising=False)  # each test imports its own stand-in, if any

    def make(variant: Variant) -> Worker:
        mirror = tmp_path / "mirror"
        write_wheel(mirror, upstream_name(VERSION, cuda="12", torch="2.8", abi=True), VERSION, variant)
        settings = make_settings(flash_attn_mirrors=(str(mirror),), model="tiny-random", offline=True,
                                 legacy_model_dirs=())
        return Worker(settings, detect=lambda with_abi=True: FP)

    yield make
    for name in [m for m in sys.modules if m == "flash_attn" or m.startswith(("flash_attn.", "flash_attn_2_cuda"))]:
        del sys.modules[name]


def audio_of(result: dict) -> np.ndarray:
    assert "error" not in result, result
    samples, _rate = sf.read(io.BytesIO(base64.b64decode(result["audio"])), dtype="float32")
    return samples


def test_ready_while_verification_runs_then_switched_to_flash_attn(worker_with_mirror, tmp_path, monkeypatch):
    gate = tmp_path / "verification-may-finish"
    monkeypatch.setenv("F5_TEST_GATE", str(gate))
    worker = worker_with_mirror(Variant.GATED).load()
    try:
        # Ready, while the verification child is still waiting at the gate.
        health = worker.health()
        assert health["status"] == "ready" and "flash_attn" in health["pending"], health
        assert health["attention"]["single"] == health["attention"]["batch"] == "sdpa"
        assert worker.background.is_alive()
        before = audio_of(worker.service.run(JOB))
        assert "flash_attn" not in sys.modules

        gate.touch()
        worker.background.join(timeout=180)
        assert not worker.background.is_alive()
        health = worker.health()
        assert health["pending"] == [] and health["flash_attn"]["backend"] == "flash_attn", health
        # verified where nothing can be timed (a CPU): flash-attn for both kinds of batch
        assert health["attention"]["single"] == health["attention"]["batch"] == "flash_attn"

        after = audio_of(worker.service.run(JOB))
        assert "flash_attn" in sys.modules and "installs" in sys.modules["flash_attn"].__file__  # the published copy ran
        np.testing.assert_allclose(after, before, atol=2 / 32767)  # the stand-in computes what SDPA does
    finally:
        worker.engine.close()


def test_a_wheel_failing_verification_leaves_sdpa_in_place_with_the_reason(worker_with_mirror):
    worker = worker_with_mirror(Variant.IMPORT_ERROR).load()
    try:
        before = audio_of(worker.service.run(JOB))
        worker.background.join(timeout=180)
        health = worker.health()
        assert health["pending"] == []
        assert health["flash_attn"]["backend"] == "sdpa" and "undefined symbol" in health["flash_attn"]["reason"]
        assert health["attention"]["single"] == health["attention"]["batch"] == "sdpa"
        np.testing.assert_array_equal(audio_of(worker.service.run(JOB)), before)
        assert "flash_attn" not in sys.modules
    finally:
        worker.engine.close()


def test_a_failed_load_is_reported_not_raised_into_the_void(make_settings, tmp_path):
    worker = Worker(make_settings(model="F5TTS_v1_Base", offline=True, legacy_model_dirs=(), flash_attn="off"))
    with pytest.raises(Exception) as caught:
        worker.load()
    health = worker.health()
    assert health["status"] == "failed" and health["error"] == str(caught.value)


def test_a_switch_waits_for_the_batch_in_flight(monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from f5_worker.attention_choice import AttentionChoice
    from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams

    engine = Engine(EngineConfig(model="tiny-random", device="cpu"))
    gate, seen = threading.Event(), []
    real = engine.sampler.sample

    def held(requests, config):  # a batch that takes as long as the test wants
        seen.append(dict(engine.sampler.backends))
        gate.wait(60)
        return real(requests, config)

    monkeypatch.setattr(engine.sampler, "sample", held)
    voice = engine.reference(tone(2.0), "A steady tone.")
    flash = AttentionChoice("flash_attn", "flash_attn", "test", "test")
    with ThreadPoolExecutor(2) as pool:
        synthesis = pool.submit(engine.synthesize, voice, "Words in the batch.", SynthesisParams(seed=1, nfe_step=2))
        while not seen:
            threading.Event().wait(0.01)
        switch = pool.submit(engine.use_attention, flash)
        threading.Event().wait(0.3)
        assert not switch.done() and engine.attention.single == "sdpa"  # not inside the batch
        gate.set()
        synthesis.result(timeout=60)
        switch.result(timeout=60)
    assert seen == [{"single": "torch", "batch": "torch"}]
    assert engine.attention == flash and engine.sampler.backends == {"single": "flash_attn", "batch": "flash_attn"}
    engine.close()
