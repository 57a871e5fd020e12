import hashlib
import json

import pytest

from f5_worker.models import HubFile
from f5_worker.models.cache import publish
from f5_worker.models.legacy import candidates, parse_url

from .conftest import CKPT, F5, VOCOS, safetensors_bytes

CKPT_FILE = HubFile(F5, CKPT, "checkpoint")


@pytest.mark.parametrize(
    "url, expected",
    [
        ("hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors", (F5, "main", CKPT)),
        ("https://huggingface.co/SWivid/F5-TTS/resolve/main/F5TTS_v1_Base/vocab.txt", (F5, "main", "F5TTS_v1_Base/vocab.txt")),
        ("https://huggingface.co/charactr/vocos-mel-24khz/resolve/main/config.yaml", (VOCOS, "main", "config.yaml")),
        ("https://github.com/SWivid/F5-TTS/archive/main.zip", None),
    ],
)
def test_parse_url(url, expected):
    assert parse_url(url) == expected


def cached_path_entry(d, url, data, etag="abc"):
    # cached_path's naming: sha256(url) + "." + sha256(etag), with a .json meta beside it.
    name = hashlib.sha256(url.encode()).hexdigest() + "." + hashlib.sha256(etag.encode()).hexdigest()
    (d / name).write_bytes(data)
    (d / f"{name}.json").write_text(json.dumps({"resource": url, "cached_path": str(d / name), "etag": etag}))
    return d / name


def test_finds_each_kind_of_legacy_place_in_order(tmp_path):
    old_hub, cp, ckpts, baked = (tmp_path / n for n in ("hub", "cached_path", "ckpts", "models"))
    src = tmp_path / "src"
    src.write_bytes(safetensors_bytes())
    blob = publish(old_hub, CKPT_FILE, src).blob
    cp.mkdir()
    body = cached_path_entry(cp, f"https://huggingface.co/{F5}/resolve/main/{CKPT}", b"cp")
    cached_path_entry(cp, f"https://huggingface.co/{F5}/resolve/main/F5TTS_Base/model_1200000.safetensors", b"other")
    (ckpts / "F5TTS_v1_Base").mkdir(parents=True)
    (ckpts / CKPT).write_bytes(b"plain")
    (baked / "F5-TTS" / "F5TTS_v1_Base").mkdir(parents=True)
    (baked / "F5-TTS" / CKPT).write_bytes(b"baked")
    found = list(candidates([old_hub, cp, ckpts, baked, tmp_path / "absent"], CKPT_FILE))
    assert [(c.path, c.origin.split()[0]) for c in found] == [
        (blob, "hub"), (body, "cached_path"), (ckpts / CKPT, "directory"), (baked / "F5-TTS" / CKPT, "directory")]
    assert found[0].blob_name == blob.name and found[1].blob_name is None


def test_vocos_in_f5_tts_checkpoints_folder(tmp_path):
    (tmp_path / "vocos-mel-24khz").mkdir()
    (tmp_path / "vocos-mel-24khz" / "config.yaml").write_text("x: 1\n")
    (found,) = candidates([tmp_path], HubFile(VOCOS, "config.yaml", "vocoder_config"))
    assert found.path == tmp_path / "vocos-mel-24khz" / "config.yaml"
