import os

import pytest

from f5_worker.models import HubFile
from f5_worker.models.cache import locate, migrated_commit, publish, quarantine

from .conftest import CKPT, F5, safetensors_bytes, sha256

CKPT_FILE = HubFile(F5, CKPT, "checkpoint")


def leftovers(root):
    return [p for p in root.rglob("*") if p.name.endswith(".incomplete")]


class TestPublish:
    def test_lays_out_blob_snapshot_and_ref_like_the_hub(self, tmp_path):
        src = tmp_path / "model_1250000.safetensors"
        src.write_bytes(safetensors_bytes())
        entry = publish(tmp_path / "hub", CKPT_FILE, src)
        repo = tmp_path / "hub" / "models--SWivid--F5-TTS"
        commit = migrated_commit(F5, "main")
        assert entry.blob == repo / "blobs" / sha256(src)
        assert entry.pointer == repo / "snapshots" / commit / CKPT
        assert os.readlink(entry.pointer) == f"../../../blobs/{sha256(src)}"
        assert (repo / "refs" / "main").read_text() == commit
        assert leftovers(tmp_path) == []

    def test_keeps_a_ref_the_hub_wrote(self, tmp_path):
        ref = tmp_path / "hub" / "models--SWivid--F5-TTS" / "refs" / "main"
        ref.parent.mkdir(parents=True)
        ref.write_text("1" * 40)
        src = tmp_path / "m"
        src.write_bytes(safetensors_bytes())
        entry = publish(tmp_path / "hub", CKPT_FILE, src)
        assert ref.read_text() == "1" * 40
        assert next(locate(tmp_path / "hub", CKPT_FILE)) == entry  # found all the same

    def test_a_source_that_does_not_match_its_hash_is_refused_and_leaves_nothing(self, tmp_path):
        src = tmp_path / "m"
        src.write_bytes(safetensors_bytes())
        with pytest.raises(ValueError, match="its cache names it"):
            publish(tmp_path / "hub", CKPT_FILE, src, expected="0" * 64)
        assert leftovers(tmp_path) == [] and not list((tmp_path / "hub").rglob("snapshots"))


class TestLocate:
    def test_finds_runpod_lower_case_folders(self, tmp_path):
        snap = tmp_path / "models--swivid--f5-tts" / "snapshots" / ("c" * 40) / "F5TTS_v1_Base"
        snap.mkdir(parents=True)
        (snap / "model_1250000.safetensors").write_bytes(b"x")  # RunPod may hold plain files, not links
        (entry,) = locate(tmp_path, CKPT_FILE)
        assert entry.pointer == snap / "model_1250000.safetensors" and entry.blob_name is None

    def test_ref_snapshot_first(self, tmp_path):
        src = tmp_path / "m"
        src.write_bytes(safetensors_bytes())
        pinned = HubFile(F5, CKPT, "checkpoint", "2" * 40)
        publish(tmp_path / "hub", pinned, src)
        migrated = publish(tmp_path / "hub", CKPT_FILE, src)
        assert [e.pointer for e in locate(tmp_path / "hub", CKPT_FILE)][0] == migrated.pointer
        assert [e.pointer.parent.parent.name for e in locate(tmp_path / "hub", pinned)] == ["2" * 40]


def test_quarantine_moves_the_blob_aside_and_drops_the_pointer(tmp_path):
    src = tmp_path / "m"
    src.write_bytes(safetensors_bytes())
    entry = publish(tmp_path / "hub", CKPT_FILE, src)
    assert quarantine(entry, tmp_path / "quarantine").startswith("moved aside")
    assert not entry.blob.exists() and not entry.pointer.is_symlink()
    assert [p.name.split(".")[0] for p in (tmp_path / "quarantine").iterdir()] == [entry.blob.name]
