"""FlashAttention-4's pinned set onto the volume (``f5_worker.fa4_fetch``): what is fetched where, and how.

The fetch tests run the real pip against a PEP 503 index on 127.0.0.1 serving stand-in wheels (a
``flash_attn/cute/`` package and one dependency) pinned by their sha256, as the real set is pinned in
``fa4_pins.json``; the plan tests use that real file.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile

import pytest
from packaging.tags import Tag

from f5_worker import fa4, fa4_fetch
from f5_worker.errors import ConfigError
from f5_worker.runtime.fingerprint import Fingerprint
from support.fa4 import gpu_engine, started

pytestmark = pytest.mark.usefixtures("isolated_imports")

H200 = Fingerprint(torch_version="2.11.0+cu130", torch_cuda="13.0", cxx11abi=True, python="3.12",
                   platform="linux_x86_64", glibc="2.39", compute_capability="9.0", gpu_name="NVIDIA H200")
CP312_LINUX = [Tag("cp312", "cp312", "manylinux_2_28_x86_64"), Tag("cp312", "abi3", "manylinux_2_28_x86_64"),
               Tag("py3", "none", "manylinux_2_28_x86_64"), Tag("py3", "none", "any")]


def wheel(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    """A minimal py3-none-any wheel: its files, METADATA, WHEEL and RECORD."""
    dist = f"{name.replace('-', '_')}-{version}"
    contents = {**files,
                f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                           "Tag: py3-none-any\n"}
    contents[f"{dist}.dist-info/RECORD"] = "".join(f"{path},,\n" for path in [*contents, f"{dist}.dist-info/RECORD"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return f"{dist}-py3-none-any.whl", buffer.getvalue()


STAND_INS = [
    ("flash-attn-4", "4.0.0b36", {"flash_attn/cute/__init__.py": "def flash_attn_func(q, k, v, softmax_scale=None):\n"
                                                                 "    return 'fa4', None\n"}),
    # As nvidia-cutlass-dsl does: a .pth that puts a directory inside the package on the path.
    ("tiny-dep", "1.0", {
        "tiny_dep/__init__.py": "", "tiny_dep/dsl_packages/tiny_cutlass/__init__.py": "VALUE = 1\n",
        "tiny_dep_packages.pth": "import sys, os, tiny_dep; "
                                 "sys.path.insert(0, os.path.join(tiny_dep.__path__[0], 'dsl_packages'))\n"}),
]


@pytest.fixture
def index(httpserver):
    """A PEP 503 index with the stand-ins, and their pins; ``tamper(name)`` serves other bytes for one file."""
    served: dict[str, bytes] = {}
    packages = {}
    for name, version, files in STAND_INS:
        filename, data = wheel(name, version, files)
        served[filename] = data
        packages[name] = (version, {filename: hashlib.sha256(data).hexdigest()})
        httpserver.expect_request(f"/simple/{name}/").respond_with_data(
            f'<html><body><a href="/files/{filename}">{filename}</a></body></html>', content_type="text/html")
    for filename in served:
        httpserver.expect_request(f"/files/{filename}").respond_with_handler(
            lambda request, filename=filename: __import__("werkzeug").Response(served[filename]))

    class Index:
        url = httpserver.url_for("/simple/")
        pins = fa4_fetch.Pins("13", packages)

        @staticmethod
        def tamper(name: str) -> None:
            filename = next(f for f in served if f.startswith(name.replace("-", "_")))
            served[filename] = served[filename] + b"\0"

        @staticmethod
        def requests() -> int:
            return len(httpserver.log)

    return Index


# -- plan: which runtimes get the set ----------------------------------------------------------------------------


def test_the_pinned_set_fits_the_h200_and_pins_every_file():
    pins = fa4_fetch.Pins.load()
    planned = fa4_fetch.plan(H200, pins, CP312_LINUX)
    assert planned.key == "flash-attn-4-4.0.0b36-cu13-cp312-linux_x86_64"
    lines = planned.requirements.splitlines()
    assert [line.split(" ")[0] for line in lines] == [f"{n}=={v}" for n, (v, _) in pins.packages.items()]
    assert all("--hash=sha256:" in line for line in lines)
    assert "flash-attn-4==4.0.0b36" in planned.requirements
    assert "nvidia-cutlass-dsl-libs-cu13==4.8.1" in planned.requirements


@pytest.mark.parametrize("changes, tags, why", [
    ({"compute_capability": None, "gpu_name": None}, CP312_LINUX, "no CUDA GPU"),
    ({"compute_capability": "8.0"}, CP312_LINUX,
     "its kernels are for Hopper (sm90) and Blackwell (sm100) GPUs; this one is sm80"),
    ({"torch_cuda": "12.8", "torch_version": "2.8.0+cu128"}, CP312_LINUX,
     "the pinned set is for torch built with CUDA 13; this torch has CUDA 12.8"),
    ({"python": "3.10"}, [Tag("cp310", "cp310", "manylinux_2_28_x86_64"), Tag("py3", "none", "any")],
     "no pinned wheel of nvidia-cutlass-dsl-libs-base 4.8.1 for this Python and platform (cp310, linux_x86_64)"),
])
def test_other_runtimes_are_told_why_not(changes, tags, why):
    runtime = Fingerprint(**{**H200.to_json(), **changes})
    assert fa4_fetch.plan(runtime, fa4_fetch.Pins.load(), tags) == why


# -- fetch: once, whole or not at all ----------------------------------------------------------------------------


def test_fetched_once_then_found_on_the_volume(index, tmp_path):
    planned = fa4_fetch.plan(H200, index.pins, CP312_LINUX)
    lines = []
    first = fa4_fetch.fetch(planned, tmp_path, index.url, allow_http=True, on_line=lines.append)

    assert not first.warm and first.site == tmp_path / "fa4" / planned.key / "site"
    assert (first.site / "flash_attn" / "cute" / "__init__.py").is_file() and (first.site / "tiny_dep").is_dir()
    assert fa4.installed(first.site) == "4.0.0b36" and fa4.installed() is None  # not on this process's path
    assert any(line.startswith("Collecting flash-attn-4") for line in lines)  # progress, file by file
    assert [p.name for p in (tmp_path / "fa4").iterdir()] == [planned.key]  # no staging left beside it

    asked = index.requests()
    again = fa4_fetch.fetch(planned, tmp_path, index.url, allow_http=True)
    assert again.warm and again.site == first.site and index.requests() == asked  # nothing fetched


def test_a_file_that_does_not_match_its_pin_publishes_nothing(index, tmp_path):
    index.tamper("tiny-dep")
    planned = fa4_fetch.plan(H200, index.pins, CP312_LINUX)
    with pytest.raises(fa4_fetch.FetchFailed, match="(?i)hash"):
        fa4_fetch.fetch(planned, tmp_path, index.url, allow_http=True)
    assert fa4_fetch.published(tmp_path, planned.key) is None
    assert list((tmp_path / "fa4").iterdir()) == []  # the staging directory went with the failure


def test_an_unreachable_index_fails_with_pips_reason(tmp_path):
    planned = fa4_fetch.Fa4Plan("flash-attn-4-4.0.0b36-cu13-cp312-linux_x86_64",
                                f"flash-attn-4==4.0.0b36 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(fa4_fetch.FetchFailed, match="flash-attn-4"):
        fa4_fetch.fetch(planned, tmp_path, "http://127.0.0.1:9/simple/", allow_http=True)
    assert fa4_fetch.published(tmp_path, planned.key) is None


def test_a_fetch_that_stalls_is_ended(httpserver, tmp_path):
    """An index that answers nothing: pip is killed at the deadline, nothing is left behind."""
    import time

    httpserver.expect_request("/simple/flash-attn-4/").respond_with_handler(lambda request: time.sleep(30))
    planned = fa4_fetch.Fa4Plan("flash-attn-4-4.0.0b36-cu13-cp312-linux_x86_64",
                                f"flash-attn-4==4.0.0b36 --hash=sha256:{'0' * 64}\n")
    started = time.monotonic()
    with pytest.raises(fa4_fetch.FetchFailed, match="ended after 3 s"):
        fa4_fetch.fetch(planned, tmp_path, httpserver.url_for("/simple/"), allow_http=True, timeout_s=3)
    assert time.monotonic() - started < 20
    assert list((tmp_path / "fa4").iterdir()) == []


def test_plain_http_needs_allow_http(index, tmp_path):
    planned = fa4_fetch.plan(H200, index.pins, CP312_LINUX)
    with pytest.raises(ConfigError, match="plain http"):
        fa4_fetch.fetch(planned, tmp_path, index.url)
    assert index.requests() == 0


def test_a_fetched_site_goes_last_on_the_path(index, tmp_path):
    fetched = fa4_fetch.fetch(fa4_fetch.plan(H200, index.pins, CP312_LINUX), tmp_path, index.url, allow_http=True)
    fa4.add_site(fetched.site)
    assert str(fetched.site) in sys.path and fa4.installed() == "4.0.0b36"
    assert sys.path.index(str(fetched.site)) > max(i for i, p in enumerate(sys.path) if p.endswith("site-packages"))
    import tiny_cutlass  # its .pth ran, as in site-packages

    assert tiny_cutlass.VALUE == 1


# -- the worker: fetched in the background, checked with the site, then used -------------------------------------


def test_the_worker_fetches_checks_and_switches(index, monkeypatch, make_settings):
    from types import SimpleNamespace

    from f5_worker.attention_choice import AttentionChoice
    from f5_worker.worker import Worker

    checked = []
    timings = {"fa4_1": 0.040, "sdpa_1": 0.048, "fa4_8": 0.663, "sdpa_8": 0.769}
    monkeypatch.setattr(fa4_fetch.Pins, "load", staticmethod(lambda path=None: index.pins))
    worker = Worker(make_settings(fa4_index=index.url), detect=lambda with_abi=True: H200)

    def check(heads, dim, frames, site=None):
        checked.append((site, worker.health()["pending"]))
        return fa4.Fa4Check(True, "ok", timings, 2.7e-4)

    monkeypatch.setattr(fa4, "check", check)
    monkeypatch.setattr(fa4, "make_importable", lambda: None)
    monkeypatch.setattr(fa4, "prepare", lambda *shape: None)
    switched = []
    sdpa = AttentionChoice.sdpa("dense attention: measured")
    engine = gpu_engine(attention=sdpa, use_attention=lambda choice, cache_dir: switched.append(choice), pending=(),
                        info=dict, batcher=SimpleNamespace(max_batch=8))
    worker.service = SimpleNamespace(engine=engine, transcriber=None)
    worker._loaded.set()
    started(worker)
    worker._fa4_pending = True  # as _load sets it when it starts the background step

    worker._finish_attention(False)  # the background step: no flash-attn left to verify, FA4 to fetch

    site = worker.settings.root / "fa4" / "flash-attn-4-4.0.0b36-cu13-cp312-linux_x86_64" / "site"
    assert [c.single for c in switched] == ["fa4"] and checked == [(site, ["fa4"])] and str(site) in sys.path
    assert "fa4" not in worker.health()["pending"]
    off = Worker(make_settings(fa4="off", fa4_index=index.url), detect=lambda with_abi=True: H200)
    assert off._with_fa4(sdpa, engine) is sdpa
    nowhere = Worker(make_settings(fa4_index=""), detect=lambda with_abi=True: H200)
    monkeypatch.setattr(fa4, "installed", lambda site=None: None)
    assert nowhere._with_fa4(sdpa, engine).single_why == (
        "dense attention: measured; FlashAttention-4 not used: not fetched: F5_WORKER_FA4_INDEX is empty")
