"""The worker's DiT, mel spectrogram and vocoder against F5-TTS's and vocos' own modules, in float32.

Both architectures F5-TTS publishes are covered at a tiny size: F5TTS_v1_Base's (every head rotated,
filler tokens masked in the text blocks) and F5TTS_Base's (rotary on the first head only, no text
masking). F5-TTS's modules get random weights with nothing left at zero, and the worker's take their
state dict as it is: equal names and shapes, then equal outputs.
"""

from __future__ import annotations

import pytest
import torch

from f5_worker.engine.models import ARCHS, TINY_RANDOM, TINY_VOCOS, ModelFiles, build_model, build_vocoder
from f5_worker.engine.nn import F5TTS, DiT, DiTArch, MelSpec, Vocos
from f5_worker.engine.text import load_vocab
from support import f5_reference as f5

V1_TINY = ARCHS[TINY_RANDOM]
BASE_TINY = DiTArch(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1,
                    text_mask_padding=False, pe_attn_head=1)
ARCH_IDS = {"v1": V1_TINY, "base": BASE_TINY}


@pytest.fixture(scope="module")
def vocab():
    return load_vocab()


@pytest.fixture(scope="module", params=list(ARCH_IDS))
def models(request, vocab):
    """F5-TTS's CFM with random weights, and the worker's model holding the same state dict."""
    arch = ARCH_IDS[request.param]
    theirs = f5.f5_cfm(arch, vocab, seed=3)
    ours = F5TTS(DiT(arch, text_num_embeds=len(vocab)), vocab)
    ours.load_state_dict(theirs.state_dict())  # strict: every name and shape is F5-TTS's
    ours.transformer.fuse()
    return theirs, ours.eval()


def request_batch(vocab_size, lengths=(40, 29, 17), tokens=(25, 31, 12), seed=4):
    generator = torch.Generator().manual_seed(seed)
    frames = max(lengths)
    x = torch.randn(len(lengths), frames, 100, generator=generator)
    cond = torch.randn(len(lengths), frames, 100, generator=generator)
    for i, n in enumerate(lengths):
        cond[i, n // 2:] = 0  # the reference covers the first half
    text = torch.full((len(lengths), max(tokens)), -1, dtype=torch.long)
    for i, n in enumerate(tokens):
        text[i, :n] = torch.randint(0, vocab_size, (n,), generator=generator)
    mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
    return x, cond, text, mask


def f5_velocity(cfm, x, cond, text, time, mask, cfg_strength):
    """What CFM.sample's ``fn`` computes at one time point."""
    for block in cfm.transformer.transformer_blocks:
        block.attn.processor.attn_mask_enabled = mask is not None
    if cfg_strength < 1e-5:
        return cfm.transformer(x=x, cond=cond, text=text, time=time, mask=mask, cache=False)
    pred, null_pred = cfm.transformer(x=x, cond=cond, text=text, time=time, mask=mask, cfg_infer=True,
                                      cache=False).chunk(2)
    return pred + (pred - null_pred) * cfg_strength


def our_velocity(model, x, cond, text, time, mask, cfg_strength):
    dit = model.transformer
    seq_len = x.shape[1] if mask is None else mask.sum(dim=1)
    dit.set_attention("torch", masked=mask is not None)
    text_cond = dit.text_embed(text, seq_len=seq_len, drop_text=False)
    text_uncond = dit.text_embed(text, seq_len=seq_len, drop_text=True)
    return dit(x, cond, text_cond, text_uncond, time, mask, cfg_strength)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cfg_strength", [2.0, 0.0])
def test_velocity_equals_f5_tts(models, vocab, masked, cfg_strength):
    theirs, ours = models
    x, cond, text, mask = request_batch(len(vocab))
    mask = mask if masked else None
    time = torch.tensor(0.37)
    with torch.inference_mode():
        expected = f5_velocity(theirs, x, cond, text, time, mask, cfg_strength)
        got = our_velocity(ours, x, cond, text, time, mask, cfg_strength)
    assert expected.abs().mean() > 0.1  # the transformer's output reaches the velocity
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_request", [False, True])
@pytest.mark.parametrize("drop_text", [False, True])
def test_text_embedding_equals_f5_tts(models, vocab, per_request, drop_text):
    theirs, ours = models
    _x, _cond, text, mask = request_batch(len(vocab), tokens=(25, 45, 12))  # 45 tokens: more than 40 frames
    seq_len = mask.sum(dim=1) if per_request else 40
    with torch.inference_mode():
        expected = theirs.transformer.text_embed(text, seq_len=seq_len, drop_text=drop_text)
        got = ours.transformer.text_embed(text, seq_len=seq_len, drop_text=drop_text)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_precomputed_time_conditioning_gives_the_same_velocity(models, vocab):
    """The sampler computes each step's modulations once per schedule and passes them in instead of the time."""
    _theirs, ours = models
    dit = ours.transformer
    x, cond, text, _mask = request_batch(len(vocab))
    time = torch.tensor(0.37)
    with torch.inference_mode():
        text_cond, text_uncond = dit.text_embed.both(text, x.shape[1])
        expected = dit(x, cond, text_cond, text_uncond, time, None, 2.0)
        conditioning = dit.time_conditioning(time.reshape(1))
        got = dit(x, cond, text_cond, text_uncond, None, None, 2.0, conditioning=conditioning)
    assert conditioning.shape == (1, sum(lin.out_features for lin in dit._modulation_linears()))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("per_request", [False, True])
def test_both_text_embeddings_at_once_equal_f5_tts(models, vocab, per_request):
    """Classifier-free guidance's two embeddings, with and without the text, from one doubled batch."""
    theirs, ours = models
    _x, _cond, text, mask = request_batch(len(vocab), tokens=(25, 45, 12))
    seq_len = mask.sum(dim=1) if per_request else 40
    with torch.inference_mode():
        expected = [theirs.transformer.text_embed(text, seq_len=seq_len, drop_text=drop) for drop in (False, True)]
        got = ours.transformer.text_embed.both(text, seq_len)
    assert not torch.allclose(expected[0], expected[1])
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shared_time", [False, True])
def test_a_block_equals_f5_tts_dit_block(models, shared_time):
    """A block with its own modulation per row, or one row of modulation for all (one time step for the batch)."""
    theirs, ours = models
    x = torch.randn(2, 23, 64, generator=torch.Generator().manual_seed(3))
    time = torch.tensor([0.3, 0.3]) if shared_time else torch.tensor([0.3, 0.7])
    t = theirs.transformer.time_embed(time)
    with torch.inference_mode():
        expected = theirs.transformer.transformer_blocks[1](x, t, rope=theirs.transformer.rotary_embed.forward_from_seq_len(23))
        modulation = ours.transformer.modulations(t[:1] if shared_time else t)[1]
        got = ours.transformer.transformer_blocks[1](x, modulation, rope=ours.transformer.rotary_embed.angles(23))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_request_time", [False, True])
def test_velocity_with_a_time_per_request_equals_f5_tts(models, vocab, per_request_time):
    theirs, ours = models
    x, cond, text, _mask = request_batch(len(vocab))
    time = torch.tensor([0.2, 0.5, 0.9]) if per_request_time else torch.tensor(0.5)
    with torch.inference_mode():
        expected = f5_velocity(theirs, x, cond, text, time, None, 2.0)
        got = our_velocity(ours, x, cond, text, time, None, 2.0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fused_modulations_are_views_of_the_block_parameters(models):
    """``fuse`` keeps F5-TTS's parameter names: loading new weights afterwards still reaches the stacked matmul."""
    _theirs, ours = models
    dit = ours.transformer
    t = torch.randn(1, 64, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        before = dit.modulations(t)
        assert dit.transformer_blocks[0].attn_norm.linear.weight.data_ptr() == dit._modulations.weight_bias()[0].data_ptr()
        dit.transformer_blocks[0].attn_norm.linear.weight = torch.nn.Parameter(
            dit.transformer_blocks[0].attn_norm.linear.weight * 2, requires_grad=False)  # no longer a view
        after = dit.modulations(t)
        dit.transformer_blocks[0].attn_norm.linear.weight = torch.nn.Parameter(
            dit.transformer_blocks[0].attn_norm.linear.weight / 2, requires_grad=False)
        dit.fuse()
    bias = dit.transformer_blocks[0].attn_norm.linear.bias
    torch.testing.assert_close(after[0] - bias, 2 * (before[0] - bias))
    torch.testing.assert_close(after[1], before[1])


@pytest.mark.parametrize("masked", [False, True])
def test_channels_last_position_embedding_equals_f5_tts(models, masked):
    theirs, ours = models
    x = torch.randn(3, 40, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.arange(40)[None] < torch.tensor([40, 25, 10])[:, None] if masked else None
    with torch.inference_mode():
        expected = theirs.transformer.input_embed.conv_pos_embed(x, mask=mask)
        torch.testing.assert_close(ours.transformer.input_embed.conv_pos_embed(x, mask), expected)


def test_mel_spectrogram_equals_f5_tts():
    audio = 0.3 * torch.randn(2, 24_000 + 77, generator=torch.Generator().manual_seed(5))
    expected = f5.modules.MelSpec(**f5.MEL_KWARGS)(audio)
    got = MelSpec()(audio)
    assert got.shape == (2, 100, 24_077 // 256 + 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(MelSpec()(audio[:, None]), expected, rtol=1e-5, atol=1e-5)  # (batch, 1, samples)
    assert list(MelSpec().state_dict()) == []  # as CFM's: nothing of the mel transform in a checkpoint


def test_vocoder_decode_equals_vocos():
    theirs = f5.f5_vocos(TINY_VOCOS, seed=6)
    ours = Vocos(TINY_VOCOS)
    ours.load_state_dict(theirs.state_dict())  # strict: vocos' names, feature extractor buffers included
    mel = torch.randn(2, 100, 50, generator=torch.Generator().manual_seed(7))
    expected = theirs.decode(mel)
    got = ours.decode(mel)
    assert got.shape == (2, 50 * 256)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_tiny_random_weights_are_what_f5_tts_modules_get_under_the_seed(vocab):
    """tiny-random is F5-TTS's CFM(DiT) and vocos' Vocos built under seed 0, zero layers then drawn from N(0, 0.02)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfm = f5.CFM(transformer=f5.DiT(**V1_TINY.f5_tts_kwargs(), text_num_embeds=len(vocab), mel_dim=100),
                     mel_spec_kwargs=f5.MEL_KWARGS, vocab_char_map=vocab)
        for param in cfm.transformer.parameters():
            if not param.any():
                torch.nn.init.normal_(param, std=0.02)
    ours = build_model(TINY_RANDOM, ModelFiles(), device="cpu")
    expected = cfm.state_dict()
    assert list(ours.state_dict()) == list(expected)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, expected[key]), key
    vocoder = build_vocoder(TINY_RANDOM, ModelFiles(), device="cpu")
    expected_vocoder = _vocos_as_built_before(TINY_VOCOS)
    for key, value in vocoder.state_dict().items():
        assert torch.equal(value, expected_vocoder[key]), key


def _vocos_as_built_before(config):
    from vocos import Vocos as TheirVocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TheirVocos(
            feature_extractor=MelSpectrogramFeatures(sample_rate=24_000, n_fft=1024, hop_length=256, n_mels=100,
                                                     padding="center"),
            backbone=VocosBackbone(input_channels=100, dim=config.dim, intermediate_dim=config.intermediate_dim,
                                   num_layers=config.num_layers),
            head=ISTFTHead(dim=config.dim, n_fft=1024, hop_length=256, padding="same"),
        ).state_dict()
