"""The engine with the tiny-random model: the real F5-TTS code path on the CPU (the audio is noise)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F

from f5_worker.engine.engine import Cancelled, SynthesisParams, crossfade
from support.engine import tiny_engine, tone

FAST = dict(nfe_step=4)


def engine_max_chars(voice) -> int:
    """F5-TTS's infer_process budget: reference text bytes per second times the seconds left of ~22 s."""
    return int(len(voice.text.encode()) / voice.seconds * (22 - voice.seconds))


def settle(engine, timeout_s: float = 30.0) -> None:
    """Wait until the engine's background work is done (its batcher has no idle work left)."""
    deadline = time.monotonic() + timeout_s
    while engine.batcher.idle is not None and time.monotonic() < deadline:
        threading.Event().wait(0.01)


LONG_TEXT = " ".join(f"Sentence number {i} is spoken here, with a few more words." for i in range(12))


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


@pytest.fixture(scope="module")
def voice(engine):
    return engine.reference(tone(3.0), "This is the reference voice")


class TestCrossfade:
    def test_matches_f5_tts_linear_fade(self):
        a, b = np.ones(10, np.float32), np.zeros(8, np.float32)
        out = np.concatenate(list(crossfade(iter([a, b]), fade=4)))
        expected = np.concatenate([np.ones(6), np.linspace(1, 0, 4), np.zeros(4)])
        np.testing.assert_allclose(out, expected, atol=1e-6)

    def test_yields_early_and_holds_back_only_the_fade(self):
        pieces = crossfade(iter([np.ones(100, np.float32), np.ones(100, np.float32)]), fade=10)
        assert len(next(pieces)) == 90

    @pytest.mark.parametrize("lengths, fade", [([5, 3, 50], 8), ([1], 4), ([20, 20], 0)])
    def test_length_is_sum_minus_overlaps(self, lengths, fade):
        waves = [np.ones(n, np.float32) for n in lengths]
        out = np.concatenate(list(crossfade(iter(waves), fade)))
        total, overlap = lengths[0], 0
        for n in lengths[1:]:
            overlap += min(fade, total, n)
            total += n - min(fade, total, n)
        assert len(out) == sum(lengths) - overlap


class TestSynthesis:
    def test_speech_is_made_and_labelled_random(self, engine, voice):
        audio = engine.synthesize(voice, "Hello world, this is a test.", SynthesisParams(seed=1, **FAST))
        assert audio.dtype == np.float32 and 1.0 < len(audio) / 24_000 < 10
        assert np.isfinite(audio).all() and audio.std() > 0
        assert engine.info()["random_weights"] is True

    def test_fixed_seed_repeats_and_another_seed_differs(self, engine, voice):
        run = lambda seed: engine.synthesize(voice, "Same words twice.", SynthesisParams(seed=seed, **FAST))
        assert np.array_equal(run(7), run(7))
        assert not np.array_equal(run(7), run(8))

    def test_long_text_is_chunked_by_f5_rules_and_streams_what_it_returns_whole(self, engine, voice):
        from support.f5_reference import utils_infer

        chunks = engine.chunks(voice, LONG_TEXT, speed=1.0)
        assert len(chunks) > 2
        assert chunks == utils_infer.chunk_text(LONG_TEXT, max_chars=engine_max_chars(voice))
        params = SynthesisParams(seed=3, **FAST)
        pieces = list(engine.stream(voice, LONG_TEXT, params))
        assert len(pieces) >= len(chunks)
        np.testing.assert_array_equal(np.concatenate(pieces), engine.synthesize(voice, LONG_TEXT, params))

    def test_a_voice_s_reference_mel_is_computed_once_and_reused(self, engine, voice, monkeypatch):
        engine.batcher.call(engine._reference_mels.clear)
        calls = []
        mel_spec = engine.model.mel_spec
        monkeypatch.setattr(mel_spec, "forward", lambda audio, forward=mel_spec.forward: calls.append(1) or forward(audio))
        first = engine.synthesize(voice, "Same words twice.", SynthesisParams(seed=7, **FAST))
        assert np.array_equal(engine.synthesize(voice, "Same words twice.", SynthesisParams(seed=7, **FAST)), first)
        assert len(calls) == 1
        other = engine.reference(tone(seconds=2.0, hz=330), "Another voice.")
        engine.synthesize(other, "Same words twice.", SynthesisParams(seed=7, **FAST))
        assert len(calls) == 2

    def test_speed_shortens_output(self, engine, voice):
        slow = engine.synthesize(voice, "A sentence of moderate length for timing.", SynthesisParams(seed=1, speed=0.7, **FAST))
        fast = engine.synthesize(voice, "A sentence of moderate length for timing.", SynthesisParams(seed=1, speed=1.5, **FAST))
        assert len(fast) < len(slow)

    def test_cancellation_drops_chunks_not_yet_started(self, engine, voice):
        gate = threading.Event()
        busy = engine.batcher.submit_call(gate.wait)  # the GPU thread is busy with someone else's batch
        batches = engine.batcher.batches
        cancel = threading.Event()
        pieces = engine.stream(voice, LONG_TEXT, SynthesisParams(seed=1, **FAST), cancel.is_set)
        waiting = threading.Thread(target=lambda: cancel.wait(0.2) or cancel.set())
        waiting.start()
        with pytest.raises(Cancelled, match="cancelled at chunk 1 of"):
            next(pieces)
        gate.set()
        busy.result(timeout=10)
        engine.batcher.call(lambda: None)  # everything queued before this has been taken
        assert engine.batcher.batches == batches  # none of the cancelled request's chunks was sampled

    def test_matches_f5_tts_infer_batch_process_under_the_same_seed(self, engine, voice):
        """Our chunk preparation and sampler against F5-TTS's own pipeline, seeded alike: equal up to rounding."""
        import torch
        from support.f5_reference import cfm_like, utils_infer, vocos_like

        text = "Hello world, this is a test."
        ours = engine.synthesize(voice, text, SynthesisParams(seed=5, **FAST))
        model, vocoder = cfm_like(engine.model), vocos_like(engine.vocoder)  # F5-TTS's and vocos' own, our weights
        torch.manual_seed(5)
        theirs, _, _ = next(utils_infer.infer_batch_process((voice.audio, 24_000), voice.text, [text], model, vocoder,
                                                            progress=None, nfe_step=FAST["nfe_step"], device="cpu"))
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)

    def test_a_quiet_reference_is_raised_and_its_output_lowered_as_f5_tts_does(self, engine):
        """Below TARGET_RMS F5-TTS raises the reference for the model and brings the output back down."""
        import torch
        from support.f5_reference import cfm_like, utils_infer, vocos_like

        quiet = engine.reference(tone(2.0) / 10, "This is a quiet voice")
        assert quiet.rms < 0.1 and torch.allclose(quiet.prompt.square().mean().sqrt(), torch.tensor(0.1))
        text = "Hello world, this is a test."
        ours = engine.synthesize(quiet, text, SynthesisParams(seed=6, **FAST))
        model, vocoder = cfm_like(engine.model), vocos_like(engine.vocoder)
        torch.manual_seed(6)
        theirs, _, _ = next(utils_infer.infer_batch_process((quiet.audio, 24_000), quiet.text, [text], model, vocoder,
                                                            progress=None, nfe_step=FAST["nfe_step"], device="cpu"))
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


class TestAttentionBackend:
    def test_sdpa_backend_runs_sdpa(self, engine, voice, monkeypatch):
        calls = []
        real = F.scaled_dot_product_attention
        monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
        engine.synthesize(voice, "Count the attention calls.", SynthesisParams(seed=1, nfe_step=4))
        # 2 layers x 4 steps x (conditional + unconditional in one batch) at least
        assert len(calls) >= 2 * 4
        assert engine.info()["attention"]["single"] == engine.info()["attention"]["batch"] == "sdpa"

    def test_flash_attn_backend_runs_flash_attn(self, tmp_path):
        """In a fresh process with a stand-in flash_attn on sys.path (as the bootstrap activates one), an
        engine built for 'flash_attn' calls flash_attn_func for one chunk, flash_attn_varlen_func for a batch
        of chunks of different lengths (F5-TTS's flash paths), and never SDPA."""
        stand_in = tmp_path / "site"
        (stand_in / "flash_attn").mkdir(parents=True)
        (stand_in / "flash_attn" / "__init__.py").write_text(FLASH_STAND_IN)
        (stand_in / "flash_attn" / "bert_padding.py").write_text(BERT_PADDING)
        script = CHECK_BACKEND.replace("SITE", str(stand_in))
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).parent.parent)
        assert proc.returncode == 0, proc.stderr[-2000:]
        counts = json.loads(proc.stdout.strip().splitlines()[-1])
        assert counts["single"] == {"dense": 2 * 4} and counts["batch"]["varlen"] >= 2 * 4, counts
        assert counts["sdpa"] == 0, counts


FLASH_STAND_IN = '''
import torch.nn.functional as F
CALLS = []
_REAL_SDPA = F.scaled_dot_product_attention  # bound now: the test counts later calls of F's
def _sdpa(q, k, v):
    return _REAL_SDPA(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
def flash_attn_func(q, k, v, **kw):
    CALLS.append("dense")
    return _sdpa(q, k, v)
def flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, **kw):
    import torch
    CALLS.append("varlen")
    b = cu_q.tolist()
    return torch.cat([_sdpa(q[x:y][None], k[x:y][None], v[x:y][None])[0] for x, y in zip(b, b[1:])])
'''

BERT_PADDING = '''
import torch
def unpad_input(hidden, mask, *args):
    seqlens = mask.sum(-1, dtype=torch.int32)
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    cu = torch.nn.functional.pad(torch.cumsum(seqlens, 0, dtype=torch.int32), (1, 0))
    return hidden.flatten(0, 1)[indices], indices, cu, int(seqlens.max()), seqlens
def pad_input(hidden, indices, batch, seqlen):
    out = torch.zeros(batch * seqlen, *hidden.shape[1:], dtype=hidden.dtype, device=hidden.device)
    out[indices] = hidden
    return out.view(batch, seqlen, *hidden.shape[1:])
'''

CHECK_BACKEND = '''
import json, sys
sys.path.insert(0, "SITE")
import torch.nn.functional as F
from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
import flash_attn
sdpa = []
real = F.scaled_dot_product_attention
F.scaled_dot_product_attention = lambda *a, **k: sdpa.append(1) or real(*a, **k)
from f5_worker.attention_choice import AttentionChoice
engine = Engine(EngineConfig(model="tiny-random", attention=AttentionChoice("flash_attn", "flash_attn", "test", "test"), device="cpu"))
import collections
import numpy as np
voice = engine.reference((0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32), "Reference words")
flash_attn.CALLS.clear(); sdpa.clear()
engine.synthesize(voice, "Which attention runs?", SynthesisParams(seed=1, nfe_step=4))
single = dict(collections.Counter(flash_attn.CALLS))
flash_attn.CALLS.clear()
long_text = "A first sentence of this text. " * 6 + "And a second, rather shorter one."
assert len(set(map(len, engine.chunks(voice, long_text, 1.0)))) > 1
engine.synthesize(voice, long_text, SynthesisParams(seed=1, nfe_step=4))
print(json.dumps({"single": single, "batch": dict(collections.Counter(flash_attn.CALLS)), "sdpa": len(sdpa)}))
'''


def test_a_lone_request_from_graphs_sounds_as_the_eager_engine(monkeypatch):
    """On a GPU a lone request's steps and its vocoder replay CUDA graphs captured once per length; here each
    graph is the part it would record (tests/engine/test_graphs.py), and the audio is the eager engine's."""
    from f5_worker.engine import graphs
    from f5_worker.engine.engine import Engine, EngineConfig

    from .test_graphs import stand_in_capture

    monkeypatch.setattr(graphs, "capture", stand_in_capture)
    eager = tiny_engine()
    graphed = Engine(EngineConfig(model="tiny-random", device="cpu"))
    monkeypatch.setattr(graphed.sampler, "cuda_graphs", True)
    monkeypatch.setattr(graphed.sampler, "max_graphs", 4)
    graphed._vocoder_graphs = graphs.GraphedByShape(graphed.vocoder.decode, kept=2, device="cpu", pool=None)
    text = "Hello world, this is a test."
    for seed in (3, 4, 5):  # the vocoder: eager, then captured, then replayed (the step graph: captured, replayed)
        want = eager.synthesize(eager.reference(tone(3.0), "This is the reference voice"), text,
                                SynthesisParams(seed=seed, nfe_step=4))
        got = graphed.synthesize(graphed.reference(tone(3.0), "This is the reference voice"), text,
                                 SynthesisParams(seed=seed, nfe_step=4))
        assert np.array_equal(got, want)
    assert len(graphed._vocoder_graphs) == 1 and len(graphed.sampler._graphs) == 1
    graphed.close()


def test_frame_bucket_rounds_generated_lengths_up():
    from f5_worker.engine.engine import Engine, EngineConfig

    bucketed = Engine(EngineConfig(model="tiny-random", device="cpu", frame_bucket=16))
    exact = tiny_engine()
    assert (bucketed.frame_bucket, exact.frame_bucket) == (16, 1)  # 1 on the CPU: F5-TTS's own estimate
    voice = exact.reference(tone(3.0), "This is the reference voice")
    for text in ["Hi.", "Hello world, this is a test.", LONG_TEXT[:150]]:
        want = exact._prepare(voice, text, SynthesisParams(), seed=0).frames
        got = bucketed._prepare(voice, text, SynthesisParams(), seed=0).frames
        assert got % 16 == 0 and want <= got < want + 16
    bucketed.close()


def test_a_tuned_frame_offset_moves_every_length_to_the_measured_phase(monkeypatch):
    """Tuning measures which lengths of a bucket run fastest (tuning.choose_frame_offset); requests and the
    graphs prepared ahead then use lengths 16 k - offset."""
    from f5_worker.engine.engine import Engine, EngineConfig
    from f5_worker.engine.tuning import TuningRecord

    bucketed = Engine(EngineConfig(model="tiny-random", device="cpu", frame_bucket=16))
    exact = tiny_engine()
    record = TuningRecord(4, "measured", False, "masked batches", 2, "1406 frames: 3.40 ms per step, against 3.69 at 1408")
    bucketed._apply_tuning(record, reused=True)
    assert bucketed.info()["frame_offset"] == 2
    voice = exact.reference(tone(3.0), "This is the reference voice")
    for text in ["Hi.", "Hello world, this is a test.", LONG_TEXT[:150]]:
        want = exact._prepare(voice, text, SynthesisParams(), seed=0).frames
        got = bucketed._prepare(voice, text, SynthesisParams(), seed=0).frames
        assert got % 16 == 14 and want <= got < want + 16
    monkeypatch.setattr(bucketed.sampler, "cuda_graphs", True)
    monkeypatch.setattr(bucketed.sampler, "max_graphs", 16)
    lengths = bucketed.prewarm_lengths()
    assert lengths[0] == 1406 and all(f % 16 == 14 for f in lengths)
    bucketed.close()


def test_a_new_tuning_is_kept_on_the_volume_under_its_key(monkeypatch, tmp_path):
    """The measurements stood in for (they need a GPU): what ``_tune`` makes of them is kept at
    cache_dir/<key>.json, every field, and applied."""
    import torch

    from f5_worker.engine import engine as engine_module
    from f5_worker.engine.engine import Engine, EngineConfig
    from f5_worker.engine.tuning import BatchTiming, TuningRecord

    def measured(value):
        def measure(*args, **kwargs):
            yield
            return value
        return measure

    monkeypatch.setattr(engine_module, "choose_frame_offset", measured((6, "phase measured")))
    monkeypatch.setattr(engine_module, "choose_mixed_policy", measured("equal-length groups: measured"))
    monkeypatch.setattr(engine_module, "measure_batches",
                        measured([BatchTiming(1, 0.01, 1 << 20), BatchTiming(8, 0.02, 1 << 20)]))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.chdir(tmp_path)
    engine = Engine(EngineConfig(model="tiny-random", device="cpu", frame_bucket=16))
    monkeypatch.setattr(engine.sampler, "cuda_graphs", True)
    monkeypatch.setattr(engine, "_tuning_key", lambda: "the-key")
    for _ in engine._tune(tmp_path / "tuning"):
        pass
    record = TuningRecord.load(tmp_path / "tuning" / "the-key.json")
    assert record is not None and (record.frame_offset, record.mixed_policy, record.batch) == (6, "equal-length groups: measured", 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tuning"]  # nothing written anywhere else
    assert (engine.frame_offset, engine.mixed_policy, engine.batcher.max_batch) == (6, "equal-length groups: measured", 8)
    engine.close()


def test_prewarm_plans_nothing_without_cuda_graphs(engine):
    assert engine.prewarm_lengths() == []
    engine.start_background()
    assert engine.batcher.idle is None and engine.pending == ()


def test_prewarm_prepares_lengths_nearest_a_typical_request_first(monkeypatch):
    from f5_worker.engine.engine import Engine, EngineConfig

    bucketed = Engine(EngineConfig(model="tiny-random", device="cpu", frame_bucket=16))
    seen = []
    monkeypatch.setattr(bucketed.sampler, "cuda_graphs", True)  # as on a GPU; sampling itself is recorded
    monkeypatch.setattr(bucketed.sampler, "max_graphs", 128)
    monkeypatch.setattr(bucketed.sampler, "sample", lambda requests, config: seen.append(requests[0].frames))
    bucketed.start_background()
    settle(bucketed, 10)
    assert len(seen) == bucketed.sampler.max_graphs // 2 == len(bucketed.prewarm_lengths())
    assert seen[0] == 1408 and all(f % 16 == 0 for f in seen)
    assert [abs(f - 1408) for f in seen] == sorted(abs(f - 1408) for f in seen)
    assert bucketed.pending == ()
    bucketed.close()


class TestKernels:
    """The switch to the Triton kernels (CUDA only; here in Triton's interpreter, which conftest.py turns on)."""

    @staticmethod
    def undecided():
        from f5_worker.engine.engine import Engine, EngineConfig

        engine = Engine(EngineConfig(model="tiny-random", device="cpu"))  # its own: tiny_engine() is shared
        assert engine.kernels == "pytorch: no CUDA GPU"
        engine._kernels_decided = False  # as on a GPU, where the engine starts undecided
        return engine

    def test_a_checked_switch_keeps_the_audio(self):
        engine = self.undecided()
        voice = engine.reference(tone(0.5), "A voice.")  # short: the interpreter runs each kernel instance in Python
        before = engine.synthesize(voice, "Hi there.", SynthesisParams(seed=3, nfe_step=2))
        assert engine.enable_kernels() == "triton" and engine.info()["kernels"] == "triton"
        after = engine.synthesize(voice, "Hi there.", SynthesisParams(seed=3, nfe_step=2))
        np.testing.assert_allclose(after, before, atol=1e-4)
        engine.close()

    def test_a_failed_check_keeps_pytorch_and_says_why(self, monkeypatch):
        from f5_worker.engine.nn import kernels

        def mismatch(dit):
            raise kernels.KernelMismatch("rotate_qk_ differs by 0.5 (tolerance 0.01)")

        monkeypatch.setattr(kernels, "check", mismatch)
        engine = self.undecided()
        assert engine.enable_kernels() == "pytorch: KernelMismatch: rotate_qk_ differs by 0.5 (tolerance 0.01)"
        assert engine.model.transformer._kernels is None
        voice = engine.reference(tone(0.5), "A voice.")
        assert len(engine.synthesize(voice, "Still speaking.", SynthesisParams(seed=1, nfe_step=2))) > 0
        engine.close()

    def test_a_check_that_never_ends_gives_up_and_background_work_goes_on(self, monkeypatch):
        from f5_worker.engine import engine as engine_module
        from f5_worker.engine.nn import kernels

        stuck = threading.Event()
        monkeypatch.setattr(kernels, "check", lambda dit: stuck.wait(30))
        monkeypatch.setattr(engine_module, "KERNELS_TIMEOUT_S", 0.2)
        engine = self.undecided()
        engine.start_background()
        settle(engine, 10)
        stuck.set()
        assert engine.kernels == "pytorch: TimeoutError: compiling and checking took over 0.2 s"
        assert engine.pending == ()
        engine.close()

    def test_background_work_starts_with_the_kernels(self):
        engine = self.undecided()
        engine.start_background()
        settle(engine)
        assert engine.kernels == "triton" and engine.pending == ()
        engine.close()
