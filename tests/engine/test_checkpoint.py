"""Loading F5-TTS's and vocos' published file formats: the worker's loader against F5-TTS's own.

F5-TTS's models are written as F5-TTS publishes them (safetensors of the EMA model's keys) and as its
trainer saves them (a ``.pt`` with ``ema_model_state_dict``, ema_pytorch's ``initted`` and ``step``,
an old version's mel buffers); vocos' as ``config.yaml`` + ``pytorch_model.bin``. F5-TTS's
``load_model`` and ``load_vocoder`` read the same files into F5-TTS's modules: the outputs must agree.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from f5_worker.engine.checkpoint import f5_tts_state_dict
from f5_worker.engine.models import (ARCHS, TINY_RANDOM, TINY_VOCOS, VOCOS_MEL_24KHZ, ModelFiles, build_model,
                                     build_vocoder, load_f5tts, load_vocos)
from f5_worker.engine.nn import DiTArch, VocosConfig
from f5_worker.engine.text import VOCAB, load_vocab
from support import f5_reference as f5

from .test_nn import BASE_TINY, V1_TINY, f5_velocity, our_velocity, request_batch

ARCH_IDS = {"v1": V1_TINY, "base": BASE_TINY}


@pytest.fixture(scope="module")
def vocab():
    return load_vocab()


@pytest.mark.parametrize("arch_id", list(ARCH_IDS))
@pytest.mark.parametrize("filename", ["model_1250000.safetensors", "model_1250000.pt"])
def test_a_checkpoint_loads_as_f5_tts_loads_it(tmp_path, vocab, arch_id, filename):
    arch = ARCH_IDS[arch_id]
    path = f5.write_f5_checkpoint(f5.f5_cfm(arch, vocab, seed=11), tmp_path / filename)
    theirs = f5.utils_infer.load_model(f5.DiT, arch.f5_tts_kwargs(), str(path), vocab_file=str(VOCAB), device="cpu")
    theirs.eval()  # load_model leaves dropout on: CFM.sample switches it off itself
    ours = load_f5tts(arch, path, VOCAB, device="cpu")
    assert ours.vocab_char_map == theirs.vocab_char_map and ours.num_channels == theirs.num_channels == 100
    tensors = {**dict(ours.named_parameters()), **dict(ours.named_buffers())}
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors.values())  # nothing left on meta
    x, cond, text, mask = request_batch(len(vocab))
    for masked in (False, True):
        args = (x, cond, text, torch.tensor(0.61), mask if masked else None, 2.0)
        with torch.inference_mode():
            torch.testing.assert_close(our_velocity(ours, *args), f5_velocity(theirs, *args), rtol=1e-5, atol=1e-5)


def test_the_ema_keys_are_taken_as_f5_tts_takes_them():
    weight = torch.ones(2)
    ema = {"initted": torch.tensor(True), "step": torch.tensor(3), "ema_model.transformer.w": weight,
           "ema_model.mel_spec.mel_stft.mel_scale.fb": torch.zeros(1),
           "ema_model.mel_spec.mel_stft.spectrogram.window": torch.zeros(1)}
    assert f5_tts_state_dict({"ema_model_state_dict": ema}, safetensors=False) == {"transformer.w": weight}
    assert f5_tts_state_dict({"ema_model.transformer.w": weight}, safetensors=True) == {"transformer.w": weight}
    assert f5_tts_state_dict({"model_state_dict": {"transformer.w": weight}}, safetensors=False,
                             use_ema=False) == {"transformer.w": weight}


def test_a_checkpoint_of_the_other_architecture_is_refused_by_name(tmp_path, vocab):
    path = f5.write_f5_checkpoint(f5.f5_cfm(V1_TINY, vocab), tmp_path / "model.safetensors")
    wider = DiTArch(dim=96, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1)
    with pytest.raises(ValueError, match=r"transformer\.time_embed\.time_mlp\.0\.weight is \(64, 256\) in the file"):
        load_f5tts(wider, path, VOCAB, device="cpu")
    deeper = DiTArch(dim=64, depth=3, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1)
    with pytest.raises(ValueError, match=r"does not fit this model: 1[0-9] \(transformer\.transformer_blocks\.2\..*missing"):
        load_f5tts(deeper, path, VOCAB, device="cpu")


def test_build_model_reads_the_checkpoint_named_in_the_model_files(tmp_path, vocab):
    cfm = f5.f5_cfm(V1_TINY, vocab, seed=12)
    path = f5.write_f5_checkpoint(cfm, tmp_path / "model.safetensors")
    ours = build_model(TINY_RANDOM, ModelFiles(checkpoint=path), attn_backend="flash_attn", device="cpu")
    for key, value in cfm.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    assert {block.attn.backend for block in ours.transformer.transformer_blocks} == {"flash_attn"}


def test_the_vocoder_loads_as_f5_tts_loads_it(tmp_path):
    config, weights = f5.write_vocos(f5.f5_vocos(TINY_VOCOS, seed=8), TINY_VOCOS, tmp_path / "vocos-mel-24khz")
    theirs = f5.utils_infer.load_vocoder("vocos", is_local=True, local_path=str(tmp_path / "vocos-mel-24khz"),
                                         device="cpu")
    ours = build_vocoder("F5TTS_v1_Base", ModelFiles(vocoder_config=config, vocoder_weights=weights), device="cpu")
    assert ours.config == TINY_VOCOS
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in ours.state_dict().values())
    mel = torch.randn(1, 100, 64, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(ours.decode(mel), theirs.decode(mel), rtol=1e-5, atol=1e-5)


def test_vocos_config_of_the_published_vocoder_round_trips(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f5.VOCOS_YAML.format(c=VOCOS_MEL_24KHZ))
    assert VocosConfig.from_yaml(path) == VOCOS_MEL_24KHZ
    path.write_text(VOCOS_MEL_24KHZ.to_yaml())
    assert VocosConfig.from_yaml(path) == VOCOS_MEL_24KHZ
    assert yaml.safe_load(path.read_text()) == yaml.safe_load(f5.VOCOS_YAML.format(c=VOCOS_MEL_24KHZ))


def test_a_vocoder_this_worker_does_not_implement_is_refused_by_name(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f5.VOCOS_YAML.format(c=VOCOS_MEL_24KHZ).replace(
        "vocos.feature_extractors.MelSpectrogramFeatures", "vocos.feature_extractors.EncodecFeatures"))
    with pytest.raises(ValueError, match="feature_extractor is 'vocos.feature_extractors.EncodecFeatures'"):
        load_vocos(path, tmp_path / "pytorch_model.bin", device="cpu")


@pytest.mark.parametrize("model", ["F5TTS_v1_Base", "F5TTS_Base"])
def test_architectures_are_f5_tts_configs(model):
    config = yaml.safe_load((f5.F5_VOCAB.parent.parent.parent / "configs" / f"{model}.yaml").read_text())["model"]
    assert config["backbone"] == "DiT" and config["mel_spec"]["mel_spec_type"] == "vocos"
    arch = {k: v for k, v in config["arch"].items()
            if k not in ("attn_backend", "attn_mask_enabled", "checkpoint_activations", "qk_norm")}
    assert config["arch"].get("qk_norm") is None  # not implemented: no published model uses it
    assert ARCHS[model].f5_tts_kwargs() == {"dim_head": 64, "pe_attn_head": None, "text_mask_padding": True} | arch
