"""The whole install path: real pip, a real child verification, wheels served from 127.0.0.1.

Each test states the runtime (a GPU the CI machine does not have) and serves
upstream-style wheels the tests build; the verification child runs the numeric
check on the CPU, where the stand-in flash_attn computes with torch SDPA.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from werkzeug import Response

from f5_worker.errors import (FlashAttnRequired, NotAFlashAttnWheel, VerificationCrashed, VerificationFailed,
                              VerificationTimeout)
from f5_worker.flash_attn import install
from f5_worker.flash_attn.provision import provision
from support.runtime import gpu_fingerprint
from support.wheels import MoreVariant, Variant, corrupt, foreign_wheel_bytes, install_into, upstream_name, wheel_bytes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated_imports")]

FP = gpu_fingerprint()  # torch 2.8 / CUDA 12 / this Python: upstream publishes 2.8.3.post2, .post1, 2.8.3 for it
NEWEST = "2.8.3.post2"


def name(version: str) -> str:
    return upstream_name(version, cuda="12", torch="2.8", abi=True)


def serve(httpserver, version: str, body: bytes, status: int = 200):
    httpserver.expect_request(f"/v{version}/{name(version)}").respond_with_data(body, status=status)


def detect(fp=FP):
    return lambda with_abi=True: fp


def installs_dir(settings) -> Path:
    return install.Layout(settings.root / "flash-attn").installs(FP.runtime_key())


def leftovers(volume: Path) -> list[Path]:
    """Anything half-written: temp downloads or staging directories."""
    return [p for p in volume.rglob("*") if p.name.endswith(".incomplete") or p.name.startswith(".staging-")]


def test_cold_start_installs_newest_then_warm_start_activates_with_no_network_and_no_pip(httpserver, make_settings, volume, monkeypatch):
    serve(httpserver, NEWEST, wheel_bytes(NEWEST))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))

    cold = provision(settings, detect=detect())

    assert cold.active and not cold.warm, cold.reason
    assert cold.wheel == name(NEWEST) and cold.source == "upstream"
    assert cold.verification["device"] == "cpu" and cold.verification["rel_error"] < 1e-5
    site = Path(cold.site)
    assert sys.path[0] == str(site)
    import os
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(site)
    assert (settings.root / "flash-attn" / "wheels" / name(NEWEST)).is_file()  # kept on the volume
    assert leftovers(volume) == []

    # Warm: nothing may touch the network, pip, or any child process.
    def no_network(request):
        raise AssertionError(f"warm start made a request: {request.url}")

    def no_processes(*args, **kwargs):
        raise AssertionError(f"warm start ran {args[0]}")

    monkeypatch.setattr(subprocess, "run", no_processes)
    monkeypatch.setattr(subprocess, "Popen", no_processes)
    requests_before = len(httpserver.log)
    warm = provision(settings, detect=detect(), http=httpx.Client(transport=httpx.MockTransport(no_network)))

    assert warm.active and warm.warm and warm.site == cold.site
    assert len(httpserver.log) == requests_before
    assert warm.seconds < 1.0


def test_missing_asset_404_falls_through_to_next_candidate(httpserver, make_settings):
    serve(httpserver, NEWEST, b"Not Found", status=404)
    serve(httpserver, "2.8.3.post1", wheel_bytes("2.8.3.post1"))
    verdict = provision(make_settings(flash_attn_upstream=httpserver.url_for("/")), detect=detect())
    assert verdict.active and verdict.version == "2.8.3.post1"
    assert [a.outcome for a in verdict.attempts] == ["failed", "active"]
    assert "HTTP 404" in verdict.attempts[0].error


def test_timeout_then_next_candidate(httpserver, make_settings):
    def stall(request):
        time.sleep(2.0)
        return Response(b"late")

    httpserver.expect_request(f"/v{NEWEST}/{name(NEWEST)}").respond_with_handler(stall)
    serve(httpserver, "2.8.3.post1", wheel_bytes("2.8.3.post1"))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"), download_timeout_s=0.5, download_retries=1)
    verdict = provision(settings, detect=detect())
    assert verdict.active and verdict.version == "2.8.3.post1"
    assert "timed out" in verdict.attempts[0].error


@pytest.mark.parametrize("damage, expected", [
    (lambda b: b[: len(b) // 2], "not a readable wheel"),
    (corrupt, "fails its CRC check"),
    (lambda b: b"<html>GitHub rate limit</html>", "not a readable wheel"),
])
def test_truncated_or_corrupt_download_is_never_kept(httpserver, make_settings, volume, damage, expected):
    serve(httpserver, NEWEST, damage(wheel_bytes(NEWEST)))
    serve(httpserver, "2.8.3.post1", wheel_bytes("2.8.3.post1"))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))
    verdict = provision(settings, detect=detect())
    assert verdict.version == "2.8.3.post1"
    assert expected in verdict.attempts[0].error
    assert not (settings.root / "flash-attn" / "wheels" / name(NEWEST)).exists()
    assert leftovers(volume) == []


def test_pinned_sha256_mismatch_rejects_the_download(httpserver, make_settings):
    serve(httpserver, NEWEST, wheel_bytes(NEWEST))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"), flash_attn_version=NEWEST,
                             flash_attn_sha256={name(NEWEST): "0" * 64})
    verdict = provision(settings, detect=detect())
    assert not verdict.active
    assert "sha256 is" in verdict.reason and "expected " + "0" * 64 in verdict.reason
    assert not (settings.root / "flash-attn" / "wheels" / name(NEWEST)).exists()


def test_pinned_sha256_match_installs(httpserver, make_settings):
    body = wheel_bytes(NEWEST)
    serve(httpserver, NEWEST, body)
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"),
                             flash_attn_sha256={name(NEWEST): hashlib.sha256(body).hexdigest()})
    assert provision(settings, detect=detect()).active


@pytest.mark.parametrize("variant, expected", [
    (Variant.IMPORT_ERROR, "undefined symbol"),
    (Variant.WRONG_NUMERICS, "differs from SDPA"),
    (Variant.SEGFAULT, "killed by SIGSEGV"),
])
def test_wheel_that_fails_verification_is_rejected_and_never_imported_here(httpserver, make_settings, volume, variant, expected):
    serve(httpserver, NEWEST, wheel_bytes(NEWEST, variant))
    serve(httpserver, "2.8.3.post1", wheel_bytes("2.8.3.post1"))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))

    verdict = provision(settings, detect=detect())

    assert expected in verdict.attempts[0].error
    assert verdict.active and verdict.version == "2.8.3.post1"
    assert "flash_attn" not in sys.modules
    assert not (installs_dir(settings) / name(NEWEST).removesuffix(".whl")).exists()
    assert leftovers(volume) == []
    # Remembered: the next cold start does not pay for it again.
    assert expected in install.rejected(installs_dir(settings))[name(NEWEST)]


def test_hanging_import_is_cut_off_by_the_verify_timeout(httpserver, make_settings):
    serve(httpserver, NEWEST, wheel_bytes(NEWEST, Variant.HANG))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"), flash_attn_version=NEWEST, verify_timeout_s=20)
    verdict = provision(settings, detect=detect())
    assert not verdict.active
    assert "did not finish within 20 s" in verdict.reason
    assert install.rejected(installs_dir(settings)) == {}  # a timeout may be passing trouble: try again next time


class TestDecisionsByType:
    """A verification timeout, a crash and a failed check are told apart by type, never by message text."""

    @pytest.mark.parametrize("variant, error, stage", [
        (Variant.HANG, VerificationTimeout, None),
        (Variant.SEGFAULT, VerificationCrashed, "import"),
        (Variant.IMPORT_ERROR, VerificationFailed, "import"),
        (MoreVariant.MISLEADING, VerificationFailed, "import"),
    ])
    def test_verify_raises_the_type_of_what_happened(self, tmp_path, variant, error, stage):
        site = install_into(tmp_path / "site", NEWEST, variant)
        with pytest.raises(VerificationFailed) as caught:
            install.verify(site, name(NEWEST), timeout_s=5)
        assert type(caught.value) is error and caught.value.stage == stage
        if error is VerificationCrashed:
            assert caught.value.returncode == -11

    def test_a_failure_whose_words_read_like_a_timeout_is_still_remembered(self, httpserver, make_settings):
        serve(httpserver, NEWEST, wheel_bytes(NEWEST, MoreVariant.MISLEADING))
        settings = make_settings(flash_attn_upstream=httpserver.url_for("/"), flash_attn_version=NEWEST)
        verdict = provision(settings, detect=detect())
        assert not verdict.active and "did not finish within 1 s" in verdict.reason
        assert "did not finish" in install.rejected(installs_dir(settings))[name(NEWEST)]

    def test_a_wheel_of_another_project_is_refused_and_not_kept(self, httpserver, make_settings, volume):
        serve(httpserver, NEWEST, foreign_wheel_bytes("not-flash-attn", NEWEST))
        serve(httpserver, "2.8.3.post1", wheel_bytes("2.8.3.post1"))
        settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))
        verdict = provision(settings, detect=detect())
        assert verdict.active and verdict.version == "2.8.3.post1"
        assert "its METADATA names the project 'not-flash-attn', not flash-attn" in verdict.attempts[0].error
        assert not (settings.root / "flash-attn" / "wheels" / name(NEWEST)).exists()
        assert install.rejected(installs_dir(settings)) == {}  # a download problem, not a verdict on the wheel
        with pytest.raises(NotAFlashAttnWheel):
            path = volume / "foreign.whl"
            path.write_bytes(foreign_wheel_bytes("not-flash-attn", NEWEST))
            install.wheel_metadata_version(path)


def test_every_candidate_failing_falls_back_to_sdpa_with_each_reason(httpserver, make_settings):
    for version in (NEWEST, "2.8.3.post1", "2.8.3"):
        serve(httpserver, version, b"Not Found", status=404)
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"), flash_attn_version=">=2.8.3")
    verdict = provision(settings, detect=detect())
    assert verdict.backend == "sdpa"
    assert verdict.reason.startswith("every candidate failed")
    assert verdict.reason.count("HTTP 404") == 3
    assert verdict.attention.single == verdict.attention.batch == "sdpa"


def test_require_turns_fallback_into_a_startup_error(httpserver, make_settings):
    settings = make_settings(flash_attn="require", flash_attn_upstream=httpserver.url_for("/"))
    with pytest.raises(FlashAttnRequired, match="F5_WORKER_FLASH_ATTN=require.*every candidate failed"):
        provision(settings, detect=detect())


def test_off_and_no_gpu_never_touch_the_network(httpserver, make_settings):
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))
    assert provision(settings.replace(flash_attn="off"), detect=detect()).reason == "flash-attn disabled by F5_WORKER_FLASH_ATTN=off"
    cpu = provision(settings, detect=detect(gpu_fingerprint(compute_capability=None, gpu_name=None)))
    assert cpu.backend == "sdpa" and cpu.reason == "no CUDA GPU detected; flash-attn needs one"
    assert len(httpserver.log) == 0


def test_unwritable_volume_falls_back_without_crashing(httpserver, make_settings):
    # /sys refuses new directories even to root (CI runs as root, where chmod would not bite).
    serve(httpserver, NEWEST, wheel_bytes(NEWEST))
    settings = make_settings(volume=Path("/sys/f5-worker-unwritable-volume"), flash_attn_upstream=httpserver.url_for("/"))
    verdict = provision(settings, detect=detect())
    assert verdict.backend == "sdpa"
    assert "Operation not permitted" in verdict.reason or "Permission denied" in verdict.reason


class TestMirrors:
    def test_directory_mirror_is_used_in_place(self, tmp_path, make_settings):
        mirror = tmp_path / "baked-wheels"
        mirror.mkdir()
        (mirror / name(NEWEST)).write_bytes(wheel_bytes(NEWEST))
        verdict = provision(make_settings(flash_attn_mirrors=(str(mirror),)), detect=detect())
        assert verdict.active and verdict.source == f"mirror[0] {mirror}"

    def test_pep503_index_with_sha256_fragments(self, httpserver, make_settings):
        good, bad = wheel_bytes(NEWEST), wheel_bytes("2.8.3.post1")
        page = (f'<a href="/files/{name(NEWEST)}#sha256={"1" * 64}">{name(NEWEST)}</a>\n'
                f'<a href="/files/{name("2.8.3.post1")}#sha256={hashlib.sha256(bad).hexdigest()}">x</a>')
        httpserver.expect_request("/simple/").respond_with_data("<html><a href='flash-attn/'>flash-attn</a></html>")
        httpserver.expect_request("/simple/flash-attn/").respond_with_data(page, content_type="text/html")
        httpserver.expect_request(f"/files/{name(NEWEST)}").respond_with_data(good)
        httpserver.expect_request(f"/files/{name('2.8.3.post1')}").respond_with_data(bad)
        verdict = provision(make_settings(flash_attn_mirrors=(httpserver.url_for("/simple/"),)), detect=detect())
        assert "sha256 is" in verdict.attempts[0].error  # the index's hash for NEWEST does not match
        assert verdict.active and verdict.version == "2.8.3.post1"

    def test_find_links_page_and_foreign_hosts_ignored(self, httpserver, make_settings):
        page = (f'<a href="{name(NEWEST)}">ours</a> '
                f'<a href="https://evil.example/{name("2.8.3.post1")}">theirs</a>')
        httpserver.expect_request("/wheels/").respond_with_data(page, content_type="text/html")
        httpserver.expect_request(f"/wheels/{name(NEWEST)}").respond_with_data(wheel_bytes(NEWEST))
        settings = make_settings(flash_attn_mirrors=(httpserver.url_for("/wheels/"),))
        verdict = provision(settings, detect=detect())
        assert verdict.active
        assert any("another host" in d["reason"] for d in verdict.plan["trace"])

    def test_http_mirror_refused_unless_allowed(self, httpserver, make_settings):
        settings = make_settings(flash_attn_mirrors=(httpserver.url_for("/wheels/"),), allow_http=False)
        verdict = provision(settings, detect=detect())
        assert verdict.backend == "sdpa"
        assert any("plain http" in d["reason"] for d in verdict.plan["trace"])
        assert len(httpserver.log) == 0


RUNNER = Path(__file__).parent.parent / "lib" / "support" / "run_provision.py"


def run_worker(settings_json: str, fp_json: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RUNNER), settings_json, fp_json],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_several_workers_starting_at_once_on_one_volume(httpserver, make_settings, volume):
    serve(httpserver, NEWEST, wheel_bytes(NEWEST))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))
    config = json.dumps({"volume": str(volume), "flash_attn_upstream": settings.flash_attn_upstream, "allow_http": True})
    workers = [run_worker(config, json.dumps(FP.to_json())) for _ in range(4)]
    results = [json.loads(w.communicate(timeout=300)[0].strip().splitlines()[-1]) for w in workers]

    assert all(r["backend"] == "flash_attn" for r in results), results
    assert len({r["site"] for r in results}) == 1
    assert leftovers(volume) == []
    assert [p.name for p in installs_dir(settings).iterdir()] == [name(NEWEST).removesuffix(".whl")]
    downloads = [entry for entry, _ in httpserver.log if entry.path.endswith(".whl")]
    assert 1 <= len(downloads) <= 4


def verify_children(volume) -> list[int]:
    """Live verification processes working under ``volume``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration, ValueError):
            continue
        if "f5_worker.flash_attn.verify" in cmdline and str(volume) in cmdline and "Z" not in state.split()[1]:
            pids.append(int(proc.name))
    return pids


def test_worker_killed_mid_install_leaves_nothing_visible_and_next_start_recovers(httpserver, make_settings, volume):
    serve(httpserver, NEWEST, wheel_bytes(NEWEST, Variant.HANG))  # the child hangs in verification: kill the worker then
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))
    config = json.dumps({"volume": str(volume), "flash_attn_upstream": settings.flash_attn_upstream, "allow_http": True})
    worker = run_worker(config, json.dumps(FP.to_json()))
    deadline = time.monotonic() + 120
    while not list(installs_dir(settings).glob(".staging-*/site/flash_attn")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    assert verify_children(volume), "the dead worker's verification child should be running by now"
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + 10
    while verify_children(volume) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert verify_children(volume) == []  # the hanging verification died with its worker

    assert install.published_installs(installs_dir(settings)) == []
    httpserver.clear()
    serve(httpserver, NEWEST, b"gone", status=404)
    serve(httpserver, "2.8.3.post1", wheel_bytes("2.8.3.post1"))
    # The wheel the dead worker fetched is whole in the cache, so the next start tries it first: it
    # still hangs, is cut off by the timeout, and the start moves on.
    verdict = provision(settings.replace(verify_timeout_s=15), detect=detect())
    assert verdict.active and verdict.version == "2.8.3.post1"
    assert install.sweep_stale(installs_dir(settings), max_age_s=0)  # the dead worker's staging directory
    assert leftovers(volume) == []
