"""The worker's sampler against F5-TTS's own CFM.sample, with the tiny-random model on the CPU."""

from __future__ import annotations

import pytest
import torch

from f5_worker.engine import f5lib
from f5_worker.engine.sampler import SampleRequest, Sampler, SamplingConfig, conv_position_embedding, initial_noise
from support.engine import tiny_engine

CONFIG = SamplingConfig(steps=6, cfg_strength=2.0, sway_sampling_coef=-1.0)


@pytest.fixture(scope="module")
def model():
    return tiny_engine().model


@pytest.fixture(scope="module")
def reference(model):
    audio = 0.1 * torch.randn(1, 24_000, generator=torch.Generator().manual_seed(0))
    text = ["A reference of one second. And the words to speak after it."]
    ids = f5lib.model_utils.list_str_to_idx(f5lib.utils_infer.convert_char_to_pinyin(text), model.vocab_char_map)[0]
    mel = model.mel_spec(audio).permute(0, 2, 1)[0]
    return audio, text, ids, mel


def request(reference, frames, seed):
    _audio, _text, ids, mel = reference
    return SampleRequest(mel, ids, frames, seed)


@pytest.mark.parametrize("cfg_strength", [2.0, 0.0])
def test_one_request_equals_cfm_sample_with_its_seed(reference, cfg_strength):
    """Against F5-TTS untouched: a fresh model, sampled by CFM.sample before our sampler swaps its attention."""
    from f5_worker.engine.models import ModelFiles, build_model

    model = build_model("tiny-random", ModelFiles(), attn_backend="torch", attn_mask_enabled=False, device="cpu")
    assert type(model.transformer.transformer_blocks[0].attn.processor).__name__ == "AttnProcessor"
    audio, text, _ids, _mel = reference
    config = SamplingConfig(steps=6, cfg_strength=cfg_strength, sway_sampling_coef=-1.0)
    with torch.inference_mode():
        expected, _ = model.sample(cond=audio, text=text, duration=180, steps=6, cfg_strength=cfg_strength,
                                   sway_sampling_coef=-1.0, seed=11)
    (ours,) = Sampler(model).sample([request(reference, 180, 11)], config)
    # Equal up to float rounding: our step batches the two guidance halves' convolutions together.
    torch.testing.assert_close(ours, expected[0], rtol=1e-5, atol=1e-5)
    assert (ours - expected[0]).abs().max() < 1e-3 * expected[0].abs().max()


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


def test_mixed_lengths_run_masked_with_the_batch_backend_and_one_length_unmasked(model, reference, monkeypatch):
    seen = []
    processor = type(model.transformer.transformer_blocks[0].attn.processor)
    real_call = processor.__call__

    def spy(self, attn, x, mask=None, rope=None):
        seen.append((self.attn_backend, self.attn_mask_enabled, mask is not None))
        return real_call(self, attn, x, mask=mask, rope=rope)

    monkeypatch.setattr(processor, "__call__", spy)
    sampler = Sampler(model, backends={"single": "torch", "batch": "torch"})
    sampler.sample([request(reference, 150, 1), request(reference, 150, 2)], CONFIG)
    assert set(seen) == {("torch", False, False)}  # one length: no mask at all
    seen.clear()
    sampler.sample([request(reference, 120, 1), request(reference, 150, 2)], CONFIG)
    assert set(seen) == {("torch", True, True)}


@pytest.mark.parametrize("masked", [False, True])
def test_channels_last_position_embedding_equals_f5_tts(model, masked):
    module = model.transformer.input_embed.conv_pos_embed
    x = torch.randn(3, 40, module.conv1d[0].in_channels, generator=torch.Generator().manual_seed(1))
    mask = torch.arange(40)[None] < torch.tensor([40, 25, 10])[:, None] if masked else None
    with torch.inference_mode():
        torch.testing.assert_close(conv_position_embedding(module, x, mask), module(x, mask=mask))


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
