"""Faults injected into the bootstrap that tests/flash_attn/test_provision.py and tests/models/test_ensure.py
do not already inject: a mirror dropping the connection mid-body, a mirror dripping slowly, a mirror index
answering garbage, the volume filling up, and a worker killed while it migrates a large checkpoint.
After each: the next start is correct and nothing half-written is left visible.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from werkzeug import Response

from f5_worker import net
from f5_worker.errors import FetchError, FetchTimeout
from f5_worker.flash_attn import install
from f5_worker.flash_attn.provision import provision
from f5_worker.models.integrity import file_digest
from support.runtime import gpu_fingerprint
from support.wheels import upstream_name, wheel_bytes

FP = gpu_fingerprint()
NEWEST, OLDER = "2.8.3.post2", "2.8.3.post1"
MODELS_CHILD = Path(__file__).parent.parent / "models" / "child.py"


def name(version: str) -> str:
    return upstream_name(version, cuda="12", torch="2.8", abi=True)


def detect(fp=FP):
    return lambda with_abi=True: fp


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".incomplete") or p.name.startswith(".staging-")]


def installs_dir(settings) -> Path:
    return install.Layout(settings.root / "flash-attn").installs(FP.runtime_key())


def dropping(body: bytes, keep: int):
    """A handler that declares the whole length, sends ``keep`` bytes, then drops the connection."""
    def handler(request):
        def stream():
            yield body[:keep]
            raise ConnectionAbortedError("the mirror went away mid-body (injected)")
        return Response(stream(), headers={"Content-Length": str(len(body))},
                        content_type="application/octet-stream", direct_passthrough=True)
    return handler


def dripping(body: bytes, chunk: int, gap_s: float):
    def handler(request):
        def stream():
            for i in range(0, len(body), chunk):
                yield body[i:i + chunk]
                time.sleep(gap_s)
        return Response(stream(), headers={"Content-Length": str(len(body))}, direct_passthrough=True)
    return handler


class TestMirrorDropsMidBody:
    def test_download_is_retried_then_refused_and_nothing_is_published(self, httpserver, tmp_path):
        body = os.urandom(200_000)
        httpserver.expect_request("/w.whl").respond_with_handler(dropping(body, 100_000))
        dest = tmp_path / "cache" / "w.whl"
        with net.client(2.0) as http, pytest.raises(FetchError) as caught:
            net.download(http, httpserver.url_for("/w.whl"), dest, max_bytes=10**7, retries=1, allow_http=True)
        assert "RemoteProtocolError" in str(caught.value) or "incomplete" in str(caught.value).lower()
        assert not dest.exists() and leftovers(tmp_path) == []
        assert len(httpserver.log) == 2  # the first try and one retry

    @pytest.mark.slow
    @pytest.mark.usefixtures("isolated_imports")
    def test_provision_moves_on_and_the_next_start_installs_the_newest(self, httpserver, make_settings, volume):
        whole = wheel_bytes(NEWEST)
        httpserver.expect_request(f"/v{NEWEST}/{name(NEWEST)}").respond_with_handler(dropping(whole, len(whole) // 2))
        httpserver.expect_request(f"/v{OLDER}/{name(OLDER)}").respond_with_data(wheel_bytes(OLDER))
        settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))
        first = provision(settings, detect=detect())
        assert first.active and first.version == OLDER
        assert "RemoteProtocolError" in first.attempts[0].error, first.attempts[0].error
        assert not (settings.root / "flash-attn" / "wheels" / name(NEWEST)).exists()
        assert leftovers(volume) == []

        # The mirror recovers; the volume already holds a published install, which a warm start takes.
        httpserver.clear()
        httpserver.expect_request(f"/v{NEWEST}/{name(NEWEST)}").respond_with_data(whole)
        again = provision(settings, detect=detect())
        assert again.active and again.warm and again.version == OLDER
        assert leftovers(volume) == []


class TestSlowMirror:
    """net.download's client timeout bounds each connect and each read; ``deadline_s`` (the worker passes
    F5_WORKER_DOWNLOAD_DEADLINE) bounds the whole transfer, so a drip inside the read timeout is cut too."""

    def test_without_a_deadline_a_drip_within_the_read_timeout_is_not_cut(self, httpserver, tmp_path):
        body = os.urandom(30 * 1024)
        httpserver.expect_request("/slow.whl").respond_with_handler(dripping(body, 1024, 0.1))
        dest = tmp_path / "slow.whl"
        with net.client(1.0) as http:
            got = net.download(http, httpserver.url_for("/slow.whl"), dest, max_bytes=10**6, retries=0,
                               allow_http=True)
        assert got.seconds > 2.0  # longer than the 1 s read timeout in all: only deadline_s bounds a transfer
        assert dest.read_bytes() == body and leftovers(tmp_path) == []

    def test_the_whole_transfer_deadline_cuts_a_drip(self, httpserver, tmp_path):
        body = os.urandom(30 * 1024)
        httpserver.expect_request("/slow.whl").respond_with_handler(dripping(body, 1024, 0.1))
        dest = tmp_path / "slow.whl"
        began = time.monotonic()
        with net.client(1.0) as http, pytest.raises(FetchTimeout, match="F5_WORKER_DOWNLOAD_DEADLINE"):
            net.download(http, httpserver.url_for("/slow.whl"), dest, max_bytes=10**6, retries=0,
                         allow_http=True, deadline_s=1.0)
        assert time.monotonic() - began < 2.5
        assert not dest.exists() and leftovers(tmp_path) == []

    def test_a_pause_longer_than_the_read_timeout_is_cut_and_retried(self, httpserver, tmp_path):
        body = os.urandom(4096)
        httpserver.expect_request("/stall.whl").respond_with_handler(dripping(body, 1024, 3.0))
        dest = tmp_path / "stall.whl"
        began = time.monotonic()
        with net.client(0.5) as http, pytest.raises(FetchTimeout):
            net.download(http, httpserver.url_for("/stall.whl"), dest, max_bytes=10**6, retries=1, allow_http=True)
        # two tries of ~0.5 s each plus 0.5 s of backoff
        assert time.monotonic() - began < 3.0
        assert not dest.exists() and leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.usefixtures("isolated_imports")
@pytest.mark.parametrize("garbage", [
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b"\x00\xff\xfe" + os.urandom(4000),  # binary junk where an index should be
    b"<a href='flash_attn-nonsense.whl'>x</a><a href='../../../etc/passwd'>y</a><a href='" + b"A" * 5000 + b"'>",
], ids=["error page", "binary junk", "nonsense links"])
def test_a_mirror_index_answering_garbage_is_skipped_for_upstream(garbage, httpserver, make_settings, volume):
    httpserver.expect_request("/simple/flash-attn/").respond_with_data(garbage, content_type="text/html")
    httpserver.expect_request(f"/v{NEWEST}/{name(NEWEST)}").respond_with_data(wheel_bytes(NEWEST))
    settings = make_settings(flash_attn_mirrors=(httpserver.url_for("/simple/flash-attn/"),),
                             flash_attn_upstream=httpserver.url_for("/"))
    verdict = provision(settings, detect=detect())
    assert verdict.active and verdict.version == NEWEST and verdict.source.startswith("upstream"), verdict.to_json()
    assert leftovers(volume) == []


# --- the volume filling up -------------------------------------------------------------------------------

@pytest.fixture
def small_volume(tmp_path):
    """A 2 MiB tmpfs as the volume (needs root and mount rights; skipped otherwise)."""
    mountpoint = tmp_path / "small-volume"
    mountpoint.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up ({done.stderr.strip()}); needs root with CAP_SYS_ADMIN")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(volume: Path, leave: int) -> Path:
    """Fill the filesystem of ``volume`` until about ``leave`` bytes are free."""
    filler = volume / "filler"
    free = shutil.disk_usage(volume).free
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.slow
@pytest.mark.usefixtures("isolated_imports")
def test_a_full_volume_falls_back_then_the_next_start_installs(small_volume, httpserver, make_settings):
    whole = wheel_bytes(NEWEST)
    httpserver.expect_request(f"/v{NEWEST}/{name(NEWEST)}").respond_with_data(whole)
    settings = make_settings(volume=small_volume, flash_attn_upstream=httpserver.url_for("/"))
    (settings.root / "flash-attn").mkdir(parents=True, exist_ok=True)
    filler = fill(small_volume, leave=len(whole) // 4)

    full = provision(settings, detect=detect())
    assert full.backend == "sdpa", full.to_json()
    assert "No space left on device" in json.dumps(full.to_json()), full.to_json()
    assert leftovers(small_volume) == []
    assert install.published_installs(installs_dir(settings)) == []

    filler.unlink()  # the operator frees space
    again = provision(settings, detect=detect())
    assert again.active and again.version == NEWEST, again.to_json()
    assert leftovers(small_volume) == []


# --- a worker killed while it migrates a large checkpoint ---------------------------------------------------

F5, VOCOS = "SWivid/F5-TTS", "charactr/vocos-mel-24khz"
CKPT, VOCAB = "F5TTS_v1_Base/model_1250000.safetensors", "F5TTS_v1_Base/vocab.txt"


def safetensors_file(path: Path, values: int) -> None:
    """A real safetensors file of one float32 tensor, written in pieces (``values`` may be large)."""
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "ema_model.transformer.weight": {"dtype": "F32", "shape": [values],
                                                          "data_offsets": [0, 4 * values]}})
    header += " " * (-len(header) % 8)
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(header)) + header.encode())
        left = 4 * values
        while left:
            out.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def legacy_models(root: Path, values: int) -> Path:
    import io

    import torch

    for repo, rel in ((F5, CKPT), (F5, VOCAB), (VOCOS, "config.yaml"), (VOCOS, "pytorch_model.bin")):
        (root / repo / rel).parent.mkdir(parents=True, exist_ok=True)
    safetensors_file(root / F5 / CKPT, values)
    (root / F5 / VOCAB).write_text("".join(f"{c}\n" for c in " abcdefghijklmnopqrstuvwxyz"))
    (root / VOCOS / "config.yaml").write_text(
        "feature_extractor:\n  class_path: vocos.feature_extractors.MelSpectrogramFeatures\n")
    buf = io.BytesIO()
    torch.save({"backbone.embed.weight": torch.arange(12.0).reshape(3, 4)}, buf)
    (root / VOCOS / "pytorch_model.bin").write_bytes(buf.getvalue())
    return root


def spawn_models_child(tmp: Path, volume: Path, legacy: Path, name: str, unreachable: str) -> subprocess.Popen:
    cfg = {"cache_dir": str(volume / "huggingface-cache" / "hub"), "work_dir": str(volume / "f5-worker" / "models"),
           "legacy_dirs": [str(legacy)]}
    cfg_file = tmp / f"{name}.json"
    cfg_file.write_text(json.dumps(cfg))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp / "home"), "HF_ENDPOINT": unreachable}
    return subprocess.Popen([sys.executable, str(MODELS_CHILD), str(cfg_file)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_worker_killed_mid_migration_copy_leaves_nothing_loadable_half_written(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{s.getsockname()[1]}"
    volume, legacy = tmp_path / "volume", legacy_models(tmp_path / "legacy", values=96 * 1024 * 1024)  # 384 MiB
    cache = volume / "huggingface-cache" / "hub"
    size = (legacy / F5 / CKPT).stat().st_size

    worker = spawn_models_child(tmp_path, volume, legacy, "killed", unreachable)
    deadline, partial = time.monotonic() + 120, []
    while time.monotonic() < deadline and worker.poll() is None:
        partial = [p for p in cache.rglob("*.incomplete") if 0 < p.stat().st_size < size] if cache.exists() else []
        if partial:
            break
        time.sleep(0.005)
    assert partial, "never caught the copy in progress (it finished or failed first)"
    worker.kill()
    worker.wait()
    assert not [p for p in cache.rglob("snapshots/*/**/*") if p.name == Path(CKPT).name], \
        "a pointer to the checkpoint exists although its copy was killed"
    left_by_the_dead = list(cache.rglob("*.incomplete"))
    assert left_by_the_dead
    for path in left_by_the_dead:  # age them past the sweep's threshold: the writer is long dead
        os.utime(path, (time.time() - 7200, time.time() - 7200))

    again = spawn_models_child(tmp_path, volume, legacy, "next", unreachable)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    report = json.loads(out)["report"]
    assert report["ok"], report
    pointers = [p for p in cache.rglob("snapshots/*/**/*") if p.is_symlink()]
    assert len(pointers) == 4
    for p in pointers:
        blob = p.resolve()
        assert not blob.name.endswith(".incomplete")
        assert file_digest(blob, "sha256" if len(blob.name) == 64 else "git-sha1") == blob.name, p
    ckpt = next(p for p in pointers if p.name == Path(CKPT).name)
    assert hashlib.sha256(ckpt.read_bytes()).digest() == hashlib.sha256((legacy / F5 / CKPT).read_bytes()).digest()
    # The next start swept the dead worker's temp file: nothing half-written stays on the volume.
    assert not any(p.exists() for p in left_by_the_dead)
    assert list(cache.rglob("*.incomplete")) == []
