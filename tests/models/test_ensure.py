"""Worker starts against a stand-in hub on 127.0.0.1, each in its own process (huggingface_hub reads HF_* at import)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from f5_worker.models.integrity import file_digest

from .conftest import CKPT, F5, VOCAB, VOCOS, sha256
from .test_legacy import cached_path_entry

ALL = [f"{F5}/{CKPT}", f"{F5}/{VOCAB}", f"{VOCOS}/config.yaml", f"{VOCOS}/pytorch_model.bin"]


def files(result) -> dict[str, dict]:
    return {f["ref"]: f for f in result["report"]["files"]}


def assert_cache_is_whole(cache: Path) -> None:
    """Every pointer resolves to a blob whose content matches its name; nothing half-written is left."""
    assert [p for p in cache.rglob("*") if ".incomplete" in p.name] == []
    pointers = [p for p in cache.rglob("snapshots/*/**/*") if p.is_symlink()]
    assert pointers
    for p in pointers:
        blob = p.resolve()
        kind = "sha256" if len(blob.name) == 64 else "git-sha1"
        assert file_digest(blob, kind) == blob.name, p


def test_first_start_downloads_second_start_is_offline(world, hub, model_files):
    first = world.start("first")
    assert first["report"]["ok"], first["report"]["error"]
    assert {r: f["source"] for r, f in files(first).items()} == dict.fromkeys(ALL, "downloaded")
    for (repo, name), data in model_files.items():
        assert Path(files(first)[f"{repo}/{name}"]["path"]).read_bytes() == data
    assert first["hf_hub_offline"] == "1" and first["hf_hub_cache"] == str(world.cache)
    assert_cache_is_whole(world.cache)

    asked = len(hub.requests)
    second = world.start("second", ask_hub_lib=True)
    assert second["report"]["ok"] and second["report"]["offline"]
    assert {f["source"] for f in files(second).values()} == {f"cache {world.cache}"}
    assert {f["check"] for f in files(second).values()} == {"stamp"}  # hashed once, at the first start
    assert len(hub.requests) == asked, "an offline start asked the hub"
    assert not second["hub_imported"]
    # Another tool reading the cache through huggingface_hub, offline, finds the same files.
    assert second["hub_lib"] == {r: f["path"] for r, f in files(second).items()}


def test_runpod_cached_models_in_lower_case_folders_are_used_in_place(world, tmp_path, unreachable):
    world.start("fill")
    runpod = tmp_path / "runpod-volume" / "huggingface-cache" / "hub"
    shutil.copytree(world.cache, runpod, symlinks=True)
    for repo_dir in list(runpod.iterdir()):
        repo_dir.rename(runpod / repo_dir.name.lower())  # models--swivid--f5-tts
    shutil.rmtree(world.volume)
    world.endpoint = unreachable

    result = world.start(read_caches=[str(runpod)])
    assert result["report"]["ok"], result["report"]["error"]
    assert {f["source"] for f in files(result).values()} == {f"cache {runpod}"}
    assert "models--swivid--f5-tts" in files(result)[f"{F5}/{CKPT}"]["path"]
    assert not any(world.cache.glob("models--*")), "read in place, not copied"


def legacy_hub_cache(world, root: Path) -> Path:
    world.start("fill")
    shutil.move(world.cache, root / "old-hub")
    shutil.rmtree(world.volume)
    return root / "old-hub"


def legacy_cached_path(world, root: Path, model_files) -> Path:
    d = root / "cached_path"
    d.mkdir()
    for (repo, name), data in model_files.items():
        cached_path_entry(d, f"https://huggingface.co/{repo}/resolve/main/{name}", data)
    return d


def legacy_plain(world, root: Path, model_files) -> Path:
    """F5-TTS's own checkout layout: ckpts/F5TTS_v1_Base/... and checkpoints/vocos-mel-24khz/... under one dir."""
    d = root / "app"
    for (repo, name), data in model_files.items():
        path = d / (name if repo == F5 else f"vocos-mel-24khz/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return d


def legacy_baked(world, root: Path, model_files) -> Path:
    """A directory baked into the image as ORG/REPO/PATH."""
    d = root / "models"
    for (repo, name), data in model_files.items():
        (d / repo / name).parent.mkdir(parents=True, exist_ok=True)
        (d / repo / name).write_bytes(data)
    return d


@pytest.mark.parametrize("kind", ["hub cache", "cached_path cache", "plain directory", "baked directory"])
def test_migration_from_each_legacy_place_then_offline(kind, world, tmp_path, model_files, unreachable):
    root = tmp_path / "legacy"
    root.mkdir()
    make = {"hub cache": lambda: legacy_hub_cache(world, root),
            "cached_path cache": lambda: legacy_cached_path(world, root, model_files),
            "plain directory": lambda: legacy_plain(world, root, model_files),
            "baked directory": lambda: legacy_baked(world, root, model_files)}[kind]
    legacy = make()
    world.endpoint = unreachable

    result = world.start("migrate", legacy_dirs=[str(legacy)])
    assert result["report"]["ok"], result["report"]["error"]
    assert {f["source"].split(" /")[0] for f in files(result).values()} == {
        "migrated from " + ("directory" if "directory" in kind else kind)}
    assert_cache_is_whole(world.cache)

    again = world.start("again", ask_hub_lib=True)  # no legacy dirs, no hub: the cache alone
    assert again["report"]["ok"] and {f["source"] for f in files(again).values()} == {f"cache {world.cache}"}
    for (repo, name), data in model_files.items():
        assert Path(again["hub_lib"][f"{repo}/{name}"]).read_bytes() == data


def test_a_corrupted_legacy_copy_is_not_migrated(world, tmp_path):
    old = legacy_hub_cache(world, tmp_path)
    blob = next(p for p in old.rglob("blobs/*") if p.name == sha256(next(old.rglob(Path(CKPT).name))))
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    result = world.start(legacy_dirs=[str(old)], offline=True)
    ckpt = files(result)[f"{F5}/{CKPT}"]
    assert ckpt["path"] is None and "its cache names it" in ckpt["trace"][0]
    assert f"{F5}/{CKPT}" in result["report"]["error"]


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["bit flip", "truncation"])
def test_a_broken_blob_is_moved_aside_and_fetched_again(damage, world, model_files):
    first = files(world.start("first"))
    blob = Path(first[f"{F5}/{CKPT}"]["path"]).resolve()
    if damage == "bit flip":
        flip_last_byte(blob)
    else:
        blob.write_bytes(blob.read_bytes()[:-100])

    result = world.start("second")
    ckpt = files(result)[f"{F5}/{CKPT}"]
    assert result["report"]["ok"] and ckpt["source"] == "downloaded"
    assert ("sha256 is" if damage == "bit flip" else "truncated") in ckpt["trace"][0]
    assert "moved aside" in ckpt["trace"][0]
    assert Path(ckpt["path"]).read_bytes() == model_files[(F5, CKPT)]
    quarantined = list((world.volume / "f5-worker" / "models" / "quarantine").iterdir())
    assert [p.name.split(".")[0] for p in quarantined] == [blob.name]
    assert_cache_is_whole(world.cache)


@pytest.mark.slow  # huggingface_hub backs off ~25 s on a refused connection before it gives up
def test_truncated_files_with_the_hub_unreachable_are_reported_never_loaded(world, unreachable):
    first = files(world.start("first"))
    for ref in (f"{F5}/{VOCAB}", f"{VOCOS}/pytorch_model.bin"):
        blob = Path(first[ref]["path"]).resolve()
        blob.write_bytes(blob.read_bytes()[:5])
    world.endpoint = unreachable
    result = world.start("second")
    assert not result["report"]["ok"] and files(result)[f"{F5}/{VOCAB}"]["path"] is None
    error = result["report"]["error"]
    assert f"{F5}/{VOCAB}" in error and "hub unreachable" in error and str(world.cache) in error
    weights = files(result)[f"{VOCOS}/pytorch_model.bin"]
    assert weights["path"] is None and weights["trace"][-1] == f"hub: not asked, hub unreachable for {F5}/{VOCAB}"
    assert result["hf_hub_offline"] != "1"  # not everything is here: libraries loaded later may still try


def test_missing_while_offline_names_the_file_and_where_it_looked(world, hub, tmp_path):
    legacy = tmp_path / "models"
    legacy.mkdir()
    result = world.start(offline=True, legacy_dirs=[str(legacy)])
    error = result["report"]["error"]
    assert f"{F5}/{CKPT}" in error and str(world.cache) in error and str(legacy) in error
    assert "the hub was not asked (offline)" in error
    assert hub.requests == []


def test_an_unwritable_volume_degrades_to_the_fallback_with_a_warning(world, tmp_path):
    # As root, permissions do not stop writes; a path under a regular file fails for everyone (ENOTDIR).
    (tmp_path / "ro").write_text("not a directory")
    fallback = tmp_path / "local" / "hub"
    result = world.start(cache_dir=str(tmp_path / "ro" / "hub"), fallback=str(fallback))
    report = result["report"]
    assert report["ok"] and report["cache_dir"] == str(fallback)
    assert "is not writable" in report["warnings"][0]
    assert {f["source"] for f in files(result).values()} == {"downloaded"}


def test_an_unwritable_volume_without_fallback_is_reported_not_raised(world, tmp_path):
    (tmp_path / "ro").write_text("not a directory")
    result = world.start(cache_dir=str(tmp_path / "ro" / "hub"))
    assert not result["report"]["ok"] and "nothing can be migrated or downloaded" in result["report"]["warnings"][0]
    assert "cache not writable" in result["report"]["error"]


@pytest.mark.slow
def test_several_workers_migrating_and_downloading_into_one_volume(world, tmp_path, model_files):
    legacy = tmp_path / "app"
    (legacy / "F5TTS_v1_Base").mkdir(parents=True)
    (legacy / CKPT).write_bytes(model_files[(F5, CKPT)])  # the checkpoint is migrated, the rest downloaded
    procs = [world.spawn(f"worker{i}", legacy_dirs=[str(legacy)]) for i in range(6)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(__import__("json").loads(out))
    assert all(r["report"]["ok"] for r in results), [r["report"]["error"] for r in results]
    for r in results:
        for (repo, name), data in model_files.items():
            assert hashlib.sha256(Path(files(r)[f"{repo}/{name}"]["path"]).read_bytes()).digest() == \
                hashlib.sha256(data).digest()
    assert_cache_is_whole(world.cache)
    assert not [p for p in (world.volume).rglob("*") if ".incomplete" in p.name]
    assert os.listdir(world.cache / "models--SWivid--F5-TTS" / "refs") == ["main"]


def test_a_custom_checkpoint_by_path_is_checked_where_it_is(world, tmp_path, model_files):
    ckpt = tmp_path / "finetune" / "model_last.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(model_files[(F5, CKPT)])
    good = files(world.start("good", ckpt=str(ckpt)))[str(ckpt)]
    assert (good["source"], good["check"], good["path"]) == ("local", "format", str(ckpt))
    ckpt.write_bytes(model_files[(F5, CKPT)][:-8])
    bad = world.start("bad", ckpt=str(ckpt))
    assert not bad["report"]["ok"] and "truncated" in files(bad)[str(ckpt)]["trace"][0]
    assert ckpt.exists(), "a user's file is reported, never moved"
