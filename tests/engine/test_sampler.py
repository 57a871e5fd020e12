"""The worker's sampler against F5-TTS's own CFM.sample, with the tiny-random model on the CPU."""

from __future__ import annotations

import pytest
import torch

from f5_worker.engine.nn import Attention
from f5_worker.engine.sampler import (SampleRequest, Sampler, SamplingConfig, get_epss_timesteps, initial_noise,
                                      lens_to_mask)
from f5_worker.engine.text import convert_char_to_pinyin, list_str_to_idx
from support import f5_reference as f5
from support.engine import tiny_engine

CONFIG = SamplingConfig(steps=6, cfg_strength=2.0, sway_sampling_coef=-1.0)


@pytest.fixture(scope="module")
def model():
    return tiny_engine().model


@pytest.fixture(scope="module")
def reference(model):
    audio = 0.1 * torch.randn(1, 24_000, generator=torch.Generator().manual_seed(0))
    text = ["A reference of one second. And the words to speak after it."]
    ids = list_str_to_idx(convert_char_to_pinyin(text), model.vocab_char_map)[0]
    mel = model.mel_spec(audio).permute(0, 2, 1)[0]
    return audio, text, ids, mel


def request(reference, frames, seed):
    _audio, _text, ids, mel = reference
    return SampleRequest(mel, ids, frames, seed)


@pytest.mark.parametrize("cfg_strength", [2.0, 0.0])
@pytest.mark.parametrize("steps", [6, 9])  # EPSS's time points, and uniform ones
def test_one_request_equals_cfm_sample_with_its_seed(model, reference, cfg_strength, steps):
    """Against F5-TTS's own CFM holding the same weights: its tokenizer, its mel, its ODE loop, its noise."""
    audio, text, _ids, _mel = reference
    config = SamplingConfig(steps=steps, cfg_strength=cfg_strength, sway_sampling_coef=-1.0)
    with torch.inference_mode():
        expected, _ = f5.cfm_like(model).sample(cond=audio, text=f5.model_utils.convert_char_to_pinyin(text),
                                                duration=180, steps=steps, cfg_strength=cfg_strength,
                                                sway_sampling_coef=-1.0, seed=11)
    (ours,) = Sampler(model).sample([request(reference, 180, 11)], config)
    # Equal up to float rounding: our step batches the two guidance halves' convolutions together.
    torch.testing.assert_close(ours, expected[0], rtol=1e-5, atol=1e-5)
    assert (ours - expected[0]).abs().max() < 1e-3 * expected[0].abs().max()


def test_a_mixed_batch_equals_cfm_sample_of_the_same_batch(model, reference):
    """CFM.sample runs a batch of different lengths masked: so does the sampler (one seed for all, as CFM draws it)."""
    audio, text, _ids, mel = reference
    lengths = [150, 120, 180]
    with torch.inference_mode():
        expected, _ = f5.cfm_like(model, attn_mask_enabled=True).sample(
            cond=mel[None].expand(3, -1, -1), text=f5.model_utils.convert_char_to_pinyin(text * 3),
            duration=torch.tensor(lengths), steps=6, cfg_strength=2.0, sway_sampling_coef=-1.0, seed=5)
    ours = Sampler(model).sample([request(reference, n, 5) for n in lengths], CONFIG)
    for mel_out, n, want in zip(ours, lengths, expected):
        torch.testing.assert_close(mel_out, want[:n], rtol=1e-4, atol=1e-4)


def test_each_request_of_a_mixed_batch_gets_its_own_length_and_its_solo_result(model, reference):
    sampler = Sampler(model)
    requests = [request(reference, frames, seed) for frames, seed in [(120, 1), (200, 2), (150, 3)]]
    batched = sampler.sample(requests, CONFIG)
    assert [m.shape for m in batched] == [(120, 100), (200, 100), (150, 100)]
    for req, mel in zip(requests, batched):
        (alone,) = sampler.sample([req], CONFIG)
        torch.testing.assert_close(mel, alone, rtol=1e-4, atol=1e-4)


def test_the_reference_frames_come_back_unchanged(model, reference):
    _audio, _text, _ids, mel = reference
    (out,) = Sampler(model).sample([request(reference, 160, 4)], CONFIG)
    torch.testing.assert_close(out[: mel.shape[0]], mel)


def test_noise_depends_only_on_seed_and_length():
    a = initial_noise(SampleRequest(torch.zeros(1, 100), torch.zeros(1), 50, seed=9), 100, "cpu", torch.float32)
    b = initial_noise(SampleRequest(torch.zeros(7, 100), torch.zeros(3), 50, seed=9), 100, "cpu", torch.float32)
    c = initial_noise(SampleRequest(torch.zeros(1, 100), torch.zeros(1), 50, seed=10), 100, "cpu", torch.float32)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.fixture
def attention_calls(monkeypatch):
    """Each attention call's (backend, masked, mask given), as the layers see them."""
    seen = []
    real = Attention.forward

    def spy(self, x, mask=None, rope=None):
        seen.append((self.backend, self.masked, mask is not None))
        return real(self, x, mask=mask, rope=rope)

    monkeypatch.setattr(Attention, "forward", spy)
    return seen


def test_mixed_lengths_run_masked_with_the_batch_backend_and_one_length_unmasked(model, reference, attention_calls):
    sampler = Sampler(model, backends={"single": "torch", "batch": "torch"})
    sampler.sample([request(reference, 150, 1), request(reference, 150, 2)], CONFIG)
    assert set(attention_calls) == {("torch", False, False)}  # one length: no mask at all
    attention_calls.clear()
    sampler.sample([request(reference, 120, 1), request(reference, 150, 2)], CONFIG)
    assert set(attention_calls) == {("torch", True, True)}


def test_set_backends_switches_the_kernels_and_drops_captured_graphs(model, reference, attention_calls):
    sampler = Sampler(model, backends={"single": "torch", "batch": "torch"})
    sampler._graphs[(1, 150, 2.0)] = object()  # as if captured with SDPA
    sampler.set_backends({"batch": "flash_attn"})
    assert sampler.backends == {"single": "torch", "batch": "flash_attn"} and not sampler.has_graph(1, 150, 2.0)
    with pytest.raises(TypeError):
        sampler.backends["single"] = "flash_attn"  # read-only: a change must go through set_backends
    with pytest.raises(ValueError, match="backends torch, flash_attn, fa4"):
        sampler.set_backends({"single": "sdpa"})
    sampler.sample([request(reference, 150, 1)], CONFIG)  # one length: still SDPA
    assert set(attention_calls) == {("torch", False, False)}


def test_mixed_lengths_split_into_equal_length_groups_give_each_its_own_result(model, reference):
    sampler = Sampler(model)
    requests = [request(reference, frames, seed) for frames, seed in [(150, 1), (120, 2), (150, 3), (130, 4)]]
    masked = sampler.sample(requests, CONFIG)
    sampler.split_mixed = True
    calls = []
    real = sampler.sample
    sampler.sample = lambda reqs, config: calls.append(sorted(r.frames for r in reqs)) or real(reqs, config)
    split = sampler.sample(requests, CONFIG)
    assert sorted(calls) == sorted([[120, 130, 150, 150], [120], [130], [150, 150]])
    for a, b in zip(masked, split):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [1, 5, 6, 7, 8, 10, 12, 16, 32])
def test_timesteps_are_f5_tts_epss_timesteps(steps):
    torch.testing.assert_close(get_epss_timesteps(steps, "cpu", torch.float32),
                               f5.model_utils.get_epss_timesteps(steps, device="cpu", dtype=torch.float32),
                               rtol=0, atol=0)


def test_lens_to_mask_is_f5_tts():
    lengths = torch.tensor([3, 7, 1])
    assert torch.equal(lens_to_mask(lengths), f5.model_utils.lens_to_mask(lengths))
    assert torch.equal(lens_to_mask(lengths, 9), f5.model_utils.lens_to_mask(lengths, 9))


def test_the_step_inputs_hand_each_step_its_time_conditioning_and_size_in_turn():
    """What every step graph reads: replays back to back advance through the steps with no work between them."""
    from f5_worker.engine.sampler import _StepInputs, timesteps

    config = SamplingConfig(steps=7)
    t = timesteps(config, "cpu", torch.float32)
    rows = torch.arange(7.0)[:, None].expand(7, 3)  # stand-ins for time_conditioning rows
    inputs = _StepInputs(steps=8, width=3, dtype=torch.float32, device="cpu")
    inputs.load((7, None), t, rows)
    for i in range(7):
        conditioning, size = inputs.step()
        assert torch.equal(conditioning, rows[i:i + 1]) and torch.equal(size, (t[i + 1] - t[i]).reshape(1))
    inputs.step()
    assert int(inputs.index) == 0  # wraps at its capacity: replays past the end never read out of bounds


@pytest.fixture
def graphs_on_cpu(monkeypatch):
    """The graph path on the CPU: each CUDA graph replaced by the part it would record (tests/engine/test_graphs.py)."""
    from f5_worker.engine import graphs

    from .test_graphs import stand_in_capture

    monkeypatch.setattr(graphs, "capture", stand_in_capture)


def test_the_step_graph_path_equals_the_eager_loop(model, reference, graphs_on_cpu):
    """The graph path's own logic (the text embedded into the step's input rows once, the step inputs it reads
    on the device, one capture per shape, the buffers grown for a longer schedule) on the CPU."""
    eager = Sampler(model, cuda_graphs=False)
    graphs = Sampler(model, cuda_graphs=False, max_graphs=4)
    graphs.cuda_graphs = True
    for steps, frames in ((6, 150), (6, 150), (9, 160), (40, 150)):  # again; another length; more steps than fit
        config = SamplingConfig(steps=steps, cfg_strength=2.0, sway_sampling_coef=-1.0)
        requests = [request(reference, frames, seed) for seed in (1, 2)]
        expected = eager.sample(requests, config)
        got = graphs.sample(requests, config)
        for g, e in zip(got, expected):
            assert torch.equal(g, e)
    assert graphs._step_inputs.capacity == 40 and len(graphs._graphs) == 1  # grown: the older graphs forgotten


def test_a_shape_whose_capture_fails_runs_eagerly_with_the_same_result(model, reference, monkeypatch):
    """A failed capture (``graphs.CaptureFailed``) costs the request nothing but speed: its shape runs the
    eager loop, is not captured again, and gets another chance once the kernels change."""
    from f5_worker.engine import graphs

    attempts = []

    def failing_capture(parts, device, pool):
        attempts.append(len(parts))
        for part in parts:
            part()  # the eager run before a capture succeeds
        raise graphs.CaptureFailed("AcceleratorError: CUDA error: operation failed due to a previous error during capture")

    monkeypatch.setattr(graphs, "capture", failing_capture)
    eager = Sampler(model, cuda_graphs=False)
    graphed = Sampler(model, cuda_graphs=False)
    graphed.cuda_graphs = True
    requests = [request(reference, 150, seed) for seed in (1, 2)]
    expected = eager.sample(requests, CONFIG)
    for _ in range(2):
        for got, want in zip(graphed.sample(requests, CONFIG), expected):
            assert torch.equal(got, want)
    assert attempts == [2] and not graphed.has_graph(2, 150, CONFIG.cfg_strength)
    graphed.set_backends({"single": "torch"})
    graphed.sample(requests, CONFIG)
    assert attempts == [2, 2]


def test_a_step_graph_ends_in_the_guided_euler_kernel_while_the_model_uses_kernels(model):
    """The step graph's Euler step (``euler_step_``) with the Triton kernels on (in their interpreter) equals the
    eager loop's ``x + dt * velocity``; tests/engine/test_kernels.py holds the kernel to CFM's fp16 rounding."""
    from f5_worker.engine.sampler import euler_step_

    dit = model.transformer
    g = torch.Generator().manual_seed(3)
    x, out, dt = torch.randn(2, 40, 100, generator=g), torch.randn(4, 40, 100, generator=g), torch.tensor([0.07])
    expected = x + dt * dit.guide(out, 2.0)
    dit.use_kernels(True)
    try:
        assert dit.kernels is not None
        euler_step_(dit, x, out, dt, 2.0)
    finally:
        dit.use_kernels(False)
    assert torch.equal(x, expected)
