import pytest

from f5_worker.models import BadModelRef, HubFile, LocalFile, parse_ref, plan


class TestPlan:
    def test_default_is_f5tts_v1_base_with_its_vocab_and_vocos(self):
        refs = [f.ref for f in plan()]
        assert refs == [
            "SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors",
            "SWivid/F5-TTS/F5TTS_v1_Base/vocab.txt",
            "charactr/vocos-mel-24khz/config.yaml",
            "charactr/vocos-mel-24khz/pytorch_model.bin",
        ]

    def test_e2tts_is_not_served_its_backbone_is_no_dit(self):
        with pytest.raises(BadModelRef, match="'E2TTS_Base'"):
            plan("E2TTS_Base")

    def test_custom_checkpoint_replaces_only_the_checkpoint(self, tmp_path):
        files = plan("F5TTS_Base", ckpt=str(tmp_path / "model_last.safetensors"))
        assert files[0] == LocalFile(tmp_path / "model_last.safetensors", "checkpoint")
        assert files[1].ref == "SWivid/F5-TTS/F5TTS_Base/vocab.txt"

    def test_unknown_model_names_the_choices(self):
        with pytest.raises(BadModelRef, match="not one of F5TTS_v1_Base, F5TTS_Base;"):
            plan("F5TTS_v2")


class TestParseRef:
    @pytest.mark.parametrize(
        "value, expected",
        [
            ("hf://SWivid/F5-TTS/F5TTS_Base/model_1200000.safetensors",
             HubFile("SWivid/F5-TTS", "F5TTS_Base/model_1200000.safetensors", "checkpoint")),
            ("Misha24-10/F5-TTS_RUSSIAN/F5TTS_v1_Base_v2/model_last_inference.safetensors",
             HubFile("Misha24-10/F5-TTS_RUSSIAN", "F5TTS_v1_Base_v2/model_last_inference.safetensors", "checkpoint")),
            ("SWivid/F5-TTS@" + "a" * 40 + "/F5TTS_v1_Base/model_1250000.safetensors",
             HubFile("SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors", "checkpoint", "a" * 40)),
            ("/models/ckpts/model_last.pt", LocalFile(__import__("pathlib").Path("/models/ckpts/model_last.pt"), "checkpoint")),
        ],
    )
    def test_examples(self, value, expected):
        assert parse_ref("CKPT", value, "checkpoint") == expected

    def test_a_pinned_commit_is_recognised(self):
        assert parse_ref("CKPT", "SWivid/F5-TTS@" + "a" * 40 + "/x.safetensors", "checkpoint").pinned

    @pytest.mark.parametrize("value", ["model.safetensors", "SWivid/F5-TTS", "  ", "hf://SWivid//x"])
    def test_rejects_what_names_no_file(self, value):
        with pytest.raises(BadModelRef, match="F5_WORKER_CKPT"):
            parse_ref("CKPT", value, "checkpoint")
