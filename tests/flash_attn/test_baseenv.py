"""A flash_attn already in the base environment: hidden until verified, then used or kept hidden (issue 15).

Each test unpacks a stand-in flash_attn (tests/lib/support/wheels.py) into a temporary
"site-packages" that goes on sys.path and, for child processes, on PYTHONPATH (as a real base
environment's site-packages is on every interpreter's path). The verification child is real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from f5_worker import bootstrap
from f5_worker.flash_attn import baseenv, install
from f5_worker.flash_attn.provision import lookup_published, provision
from support.runtime import gpu_fingerprint
from support.wheels import Variant, install_into, upstream_name, wheel_bytes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated_imports")]

FP = gpu_fingerprint()
BASE_VERSION = "2.8.3"  # what the image installed
NEWEST = "2.8.3.post2"


def detect(with_abi=True):
    return FP


def forget_flash_attn_modules() -> None:
    for name in [m for m in sys.modules if m.partition(".")[0] in baseenv.MODULES]:
        del sys.modules[name]


@pytest.fixture
def base_env(tmp_path, monkeypatch):
    """Install a stand-in into a fresh site-packages on sys.path and PYTHONPATH; undo everything after."""
    made = []

    def make(variant: Variant) -> Path:
        site = install_into(tmp_path / "base" / "site-packages", BASE_VERSION, variant)
        sys.path.append(str(site))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(site)) if p))
        made.append(site)
        return site

    forget_flash_attn_modules()
    yield make
    baseenv.unhide()
    forget_flash_attn_modules()


def child_import() -> subprocess.CompletedProcess:
    """``python -c "import flash_attn"`` in a child, with this process's environment."""
    return subprocess.run([sys.executable, "-c", "import flash_attn; print(flash_attn.__file__)"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


@pytest.mark.parametrize("variant, failure", [
    (Variant.IMPORT_ERROR, "undefined symbol"),
    (Variant.SEGFAULT, "killed by SIGSEGV"),
])
def test_broken_base_env_flash_attn_is_hidden_from_the_worker_and_its_children(base_env, make_settings, variant, failure):
    site = base_env(variant)
    before = child_import()  # what a child would meet without the worker's hiding
    assert before.returncode == (-11 if variant is Variant.SEGFAULT else 1), before

    verdict = provision(make_settings(), detect=detect)

    assert verdict.backend == "sdpa"
    (attempt,) = verdict.attempts
    assert attempt.source == "base-env" and attempt.outcome == "failed" and failure in attempt.error
    assert verdict.base_env["where"] == "base environment" and verdict.base_env["site"] == str(site)
    assert verdict.base_env["status"] == "hidden"
    assert verdict.base_env["reason"].startswith("failed verification, hidden for the life of the process")
    assert "in the base environment" in verdict.reason and failure in verdict.reason
    # In this process: a clean ImportError that says why.
    with pytest.raises(ImportError, match="hidden by f5-worker"):
        import flash_attn  # noqa: F401
    with pytest.raises(ImportError, match="hidden by f5-worker"):
        import flash_attn_2_cuda  # noqa: F401
    # In a child: an ImportError, not the crash (or the broken import) of the real one.
    after = child_import()
    assert after.returncode == 1, after
    assert "ImportError" in after.stderr and "hidden by f5-worker" in after.stderr


def test_good_base_env_flash_attn_is_verified_before_any_download_and_used(base_env, make_settings, httpserver):
    site = base_env(Variant.GOOD)
    httpserver.expect_request(f"/v{NEWEST}/{upstream_name(NEWEST)}").respond_with_data(wheel_bytes(NEWEST))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))

    verdict = provision(settings, detect=detect)

    assert verdict.active and verdict.source == "base-env" and verdict.version == BASE_VERSION, verdict.to_json()
    assert verdict.site == str(site) and verdict.verification["rel_error"] < 1e-5
    assert verdict.base_env["where"] == "base environment" and verdict.base_env["status"] == "in use"
    assert [(a.source, a.outcome) for a in verdict.attempts] == [("base-env", "active")]
    assert len(httpserver.log) == 0  # tried before downloads: nothing fetched
    assert baseenv.hidden() is None and str(baseenv.shadow_dir()) not in os.environ["PYTHONPATH"]
    import flash_attn

    assert Path(flash_attn.__file__).is_relative_to(site)
    assert child_import().returncode == 0


def test_failed_base_env_then_a_verified_download_imports_normally(base_env, make_settings, httpserver, volume):
    site = base_env(Variant.IMPORT_ERROR)
    httpserver.expect_request(f"/v{NEWEST}/{upstream_name(NEWEST)}").respond_with_data(wheel_bytes(NEWEST))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))

    verdict = provision(settings, detect=detect)

    assert verdict.active and verdict.source == "upstream" and verdict.version == NEWEST, verdict.to_json()
    assert [(a.source, a.outcome) for a in verdict.attempts] == [("base-env", "failed"), ("upstream", "active")]
    assert verdict.base_env["status"] == "hidden"
    # The verified install wins, here and in children; the broken copy stays hidden behind it.
    import flash_attn

    assert Path(flash_attn.__file__).is_relative_to(Path(verdict.site))
    child = child_import()
    assert child.returncode == 0 and Path(child.stdout.strip()).is_relative_to(Path(verdict.site))
    assert baseenv.hidden() is not None and baseenv.hidden().site == site


def test_a_published_install_still_wins_at_warm_start(base_env, make_settings, httpserver):
    base_env(Variant.IMPORT_ERROR)
    httpserver.expect_request(f"/v{NEWEST}/{upstream_name(NEWEST)}").respond_with_data(wheel_bytes(NEWEST))
    settings = make_settings(flash_attn_upstream=httpserver.url_for("/"))
    cold = provision(settings, detect=detect)
    assert cold.active and cold.source == "upstream"

    baseenv.unhide()  # a new process: nothing hidden yet
    forget_flash_attn_modules()
    warm = lookup_published(settings, detect=detect)

    assert warm.active and warm.warm and warm.site == cold.site
    assert warm.base_env["status"] == "hidden" and "published on the volume" in warm.base_env["reason"]
    assert baseenv.hidden() is not None  # hidden, not verified: the published install is used instead


def test_worker_published_installs_are_never_taken_for_the_base_environment(make_settings, httpserver, tmp_path):
    httpserver.expect_request(f"/v{NEWEST}/{upstream_name(NEWEST)}").respond_with_data(wheel_bytes(NEWEST))
    verdict = provision(make_settings(flash_attn_upstream=httpserver.url_for("/")), detect=detect)
    assert verdict.active and verdict.site in sys.path  # activated: on sys.path now
    try:
        assert baseenv.find() is None  # it sits in <installs>/<wheel>/site beside install.json
        assert baseenv.find(exclude=[tmp_path]) is None
    finally:
        forget_flash_attn_modules()


def test_bootstrap_hides_at_once_and_the_background_step_decides(base_env, make_settings, volume):
    site = base_env(Variant.GOOD)
    settings = make_settings(model="tiny-random", offline=True, legacy_model_dirs=())

    settings, report = bootstrap.run(settings, defer_flash_attn=True, detect=detect)

    assert report.pending == ["flash_attn"]
    assert report.flash_attn.base_env["status"] == "hidden" and report.flash_attn.base_env["site"] == str(site)
    with pytest.raises(ImportError, match="hidden by f5-worker"):
        import flash_attn  # noqa: F401  not before it has passed

    verdict = bootstrap.finish_flash_attn(settings, report, detect=detect)

    assert verdict.active and verdict.source == "base-env"
    saved = (settings.root / "reports" / "last-bootstrap.json").read_text()
    assert '"where": "base environment"' in saved and '"status": "in use"' in saved
    assert report.pending == []


def test_base_env_outside_the_version_request_stays_hidden_unverified(base_env, make_settings):
    base_env(Variant.GOOD)
    verdict = provision(make_settings(flash_attn_version=">=2.8.3.post1"), detect=detect)
    assert verdict.backend == "sdpa" and verdict.attempts == []
    assert verdict.base_env["status"] == "hidden"
    assert verdict.base_env["reason"] == "not verified: version 2.8.3 is not in the request '>=2.8.3.post1' (F5_WORKER_FLASH_ATTN_VERSION)"


def test_no_gpu_keeps_it_hidden_without_running_it(base_env, make_settings):
    base_env(Variant.SEGFAULT)
    verdict = provision(make_settings(), detect=lambda with_abi=True: gpu_fingerprint(compute_capability=None, gpu_name=None))
    assert verdict.backend == "sdpa" and verdict.attempts == []
    assert verdict.base_env["reason"] == "not verified: no CUDA GPU detected; flash-attn needs one"
    assert child_import().returncode == 1  # hidden: a clean ImportError, never the segfault


def test_published_install_layout_is_what_find_skips(tmp_path):
    """``find`` recognises the worker's installs by their layout, on any volume."""
    layout = install.Layout(tmp_path / "flash-attn")
    site = install_into(layout.installs("key") / "flash_attn-x" / "site", BASE_VERSION)
    (site.parent / install.INSTALL_MANIFEST).write_text("{}")
    assert baseenv.find(path=[str(site)]) is None
    (site.parent / install.INSTALL_MANIFEST).unlink()
    assert baseenv.find(path=[str(site)]).site == site


def test_flash_attention_4s_directory_alone_is_no_base_env_flash_attn(tmp_path):
    """flash-attn-4 installs ``flash_attn/cute/`` without ``flash_attn/__init__.py`` (a namespace): nothing for
    the base-environment check to hide (``f5_worker.fa4`` checks FA4 itself); flash-attn 2 beside it still is."""
    site = tmp_path / "site-packages"
    (site / "flash_attn" / "cute").mkdir(parents=True)
    (site / "flash_attn" / "cute" / "__init__.py").write_text("")
    assert baseenv.find(path=[str(site)]) is None
    fa2 = install_into(tmp_path / "fa2" / "site-packages", BASE_VERSION)
    assert baseenv.find(path=[str(site), str(fa2)]).site == fa2
