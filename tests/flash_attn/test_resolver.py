"""The resolver, fed fingerprints of real runtimes and checked against real upstream asset names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from f5_worker.errors import InvalidVersionRequest
from f5_worker.flash_attn.resolver import Offer, VersionRequest, resolve
from f5_worker.flash_attn.wheelname import FlashAttnWheel
from f5_worker.runtime.fingerprint import Fingerprint

UPSTREAM = "https://github.com/Dao-AILab/flash-attention/releases/download"
# Real asset names with where each was seen (an issue, a lock file, a catalogue of release hashes).
ASSETS = json.loads((Path(__file__).parent.parent / "data" / "upstream_assets.json").read_text())
TORCH_CUDA_FOR_LABEL = {"118": "11.8", "11": "11.8", "122": "12.1", "123": "12.4", "12": "12.6", "13": "13.0"}


def runtime_for(wheel: FlashAttnWheel, **changes) -> Fingerprint:
    """A runtime this wheel was built for: the fingerprint a user of that asset would have."""
    values = dict(
        torch_version=f"{wheel.torch}.1",
        torch_cuda=TORCH_CUDA_FOR_LABEL[wheel.cuda_label],
        cxx11abi=wheel.cxx11abi,
        python=f"{wheel.python_tag[2]}.{wheel.python_tag[3:]}",
        platform=wheel.platform,
        glibc="2.35",
        compute_capability="9.0",
        driver="580.65.06",
    )
    values.update(changes)
    return Fingerprint(**values)


H100_WORKER = Fingerprint(  # our GPU test machine (../shared/gpu/README.md)
    torch_version="2.11.0+cu130", torch_cuda="13.0", cxx11abi=True, python="3.12", platform="linux_x86_64",
    glibc="2.39", compute_capability="9.0", driver="580.159.04",
)
RUNPOD_PYTORCH_24 = Fingerprint(  # runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04
    torch_version="2.4.0+cu124", torch_cuda="12.4", cxx11abi=False, python="3.11", platform="linux_x86_64",
    glibc="2.35", compute_capability="8.6", driver="550.127.05",
)


class TestRealUpstreamAssets:
    @pytest.mark.parametrize("asset", ASSETS, ids=[a["filename"] for a in ASSETS])
    def test_exact_request_resolves_to_the_real_asset(self, asset):
        wheel = FlashAttnWheel.parse(asset["filename"])
        plan = resolve(runtime_for(wheel), VersionRequest.parse(asset["release"]), upstream_url=UPSTREAM)
        assert plan.status == "ok", plan.reason
        first = plan.candidates[0]
        assert first.filename == asset["filename"]
        assert first.url == f"{UPSTREAM}/v{asset['release']}/{asset['filename']}"
        assert first.source == "upstream"


class TestAuto:
    def test_picks_newest_release_with_a_wheel_and_explains_the_newer_ones(self):
        plan = resolve(RUNPOD_PYTORCH_24, VersionRequest.parse("auto"), upstream_url=UPSTREAM)
        assert plan.status == "ok"
        assert plan.candidates[0].filename == "flash_attn-2.8.3.post2+cu12torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl"
        versions = [c.version for c in plan.candidates]
        assert versions == sorted(versions, key=lambda v: tuple(map(int, v.replace(".post", ".").split("."))), reverse=True)

    def test_range_request(self):
        plan = resolve(RUNPOD_PYTORCH_24, VersionRequest.parse(">=2.7,<2.8"), upstream_url=UPSTREAM)
        assert {c.version for c in plan.candidates} == {
            "2.7.0", "2.7.0.post1", "2.7.0.post2", "2.7.1", "2.7.1.post1", "2.7.1.post2", "2.7.1.post3",
            "2.7.1.post4", "2.7.2", "2.7.2.post1", "2.7.3", "2.7.4", "2.7.4.post1"}
        assert plan.candidates[0].version == "2.7.4.post1"

    def test_cuda_118_torch_is_never_sent_to_a_release_that_built_no_cu11(self):
        """Issue 15: 2.7.4 and 2.7.4.post1 build CUDA 12.4.1 only; their cu11 names never existed."""
        fp = Fingerprint(**{**RUNPOD_PYTORCH_24.to_json(), "torch_version": "2.4.0+cu118", "torch_cuda": "11.8"})
        plan = resolve(fp, VersionRequest.parse("auto"), upstream_url=UPSTREAM)
        assert plan.candidates[0].filename == "flash_attn-2.7.3+cu11torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl"
        assert all(c.filename.split("+")[1].startswith(("cu11torch", "cu118torch")) for c in plan.candidates)
        refused = {d.subject: d.reason for d in plan.trace if not d.accepted}
        assert refused["flash_attn 2.7.4.post1"] == "release 2.7.4.post1 built no CUDA 11 wheels (built: cu12)"
        assert refused["flash_attn 2.7.4"] == "release 2.7.4 built no CUDA 11 wheels (built: cu12)"

    def test_a_release_whose_run_built_nothing_is_refused_with_the_reason(self):
        plan = resolve(RUNPOD_PYTORCH_24, VersionRequest.parse("==2.8.0"), upstream_url=UPSTREAM)
        assert plan.status == "unsupported"
        assert "release 2.8.0 published no wheels: its matrix runs on ubuntu-20.04, which GitHub retired" in plan.reason

    def test_a_release_known_only_from_pypi_is_offered_as_unconfirmed(self):
        plan = resolve(RUNPOD_PYTORCH_24, VersionRequest.parse("==2.8.3.post2"), upstream_url=UPSTREAM)
        (taken,) = [d for d in plan.trace if d.accepted]
        assert taken.reason.startswith("release 2.8.3.post2 built this wheel (UNCONFIRMED: no tag v2.8.3.post2")

    def test_cuda13_torch_gets_the_cu13_asset_that_setup_py_would_not_ask_for(self):
        fp = runtime_for(FlashAttnWheel.parse("flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"))
        plan = resolve(fp, VersionRequest.parse("auto"), upstream_url=UPSTREAM)
        # v2.8.3.post1 serves its cu13 wheel under the name 2.8.3; newest first.
        assert [(c.version, c.filename) for c in plan.candidates[:2]] == [
            ("2.8.3.post1", "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"),
            ("2.8.3", "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"),
        ]
        assert plan.candidates[0].url.endswith("/v2.8.3.post1/flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl")

    def test_no_upstream_wheel_for_torch_211_says_why(self):
        plan = resolve(H100_WORKER, VersionRequest.parse("auto"), upstream_url=UPSTREAM)
        assert plan.status == "unsupported"
        assert "torch 2.11.0+cu130" in plan.reason
        assert all(not d.accepted for d in plan.trace)

    def test_old_glibc_skips_releases_built_on_newer_images(self):
        fp = Fingerprint(**{**RUNPOD_PYTORCH_24.to_json(), "glibc": "2.31"})
        plan = resolve(fp, VersionRequest.parse("auto"), upstream_url=UPSTREAM)
        assert plan.candidates[0].version == "2.7.4.post1"  # built on ubuntu-20.04: glibc 2.31
        assert any("was built on a system with glibc 2.35, runtime has 2.31" in d.reason for d in plan.trace)
        # The same for assets uploaded outside the matrix after ubuntu-20.04 runners were retired.
        fp27 = Fingerprint(**{**fp.to_json(), "torch_version": "2.7.1+cu126", "torch_cuda": "12.6", "cxx11abi": True})
        plan = resolve(fp27, VersionRequest.parse("==2.7.4.post1"), upstream_url=UPSTREAM)
        assert plan.status == "unsupported"
        assert "was uploaded outside its build matrix on a system with glibc 2.35, runtime has 2.31" in plan.reason


class TestGates:
    @pytest.mark.parametrize(
        "changes, reason",
        [
            ({"compute_capability": None}, "no CUDA GPU detected"),
            ({"compute_capability": "7.5", "gpu_name": "Tesla T4"}, "compute capability 7.5"),
            ({"torch_version": None, "torch_cuda": None}, "torch is not installed"),
            ({"torch_cuda": None}, "not a CUDA build"),
            ({"driver": "520.61.05"}, "driver 520.61.05 is older than 525.60.13"),
        ],
    )
    def test_unsupported_environment_gets_a_reason_and_no_candidates(self, changes, reason):
        fp = Fingerprint(**{**RUNPOD_PYTORCH_24.to_json(), **changes})
        plan = resolve(fp, VersionRequest.parse("auto"), upstream_url=UPSTREAM, offers=[
            Offer("flash_attn-2.8.3+cu12torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl", "file:///w.whl", "cache", 0)])
        assert plan.status == "unsupported"
        assert reason in plan.reason
        assert plan.candidates == ()

    def test_cu13_needs_driver_580(self):
        fp = Fingerprint(**{**H100_WORKER.to_json(), "driver": "570.124.06"})
        assert "older than 580" in resolve(fp, VersionRequest.parse("auto"), upstream_url=UPSTREAM).reason


class TestOffers:
    MIRROR_WHEEL = "flash_attn-2.8.3.post2+cu13torch2.11cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"

    def test_mirror_wheel_under_upstream_name_is_taken_for_a_runtime_upstream_never_built(self):
        offers = [Offer(self.MIRROR_WHEEL, f"http://127.0.0.1:1/{self.MIRROR_WHEEL}", "mirror[0] http://127.0.0.1:1/", 1, "ab" * 32)]
        plan = resolve(H100_WORKER, VersionRequest.parse("auto"), offers=offers, upstream_url=UPSTREAM)
        assert plan.status == "ok"
        assert [c.filename for c in plan.candidates] == [self.MIRROR_WHEEL]
        assert plan.candidates[0].sha256 == "ab" * 32

    def test_cache_then_mirrors_then_upstream_for_the_same_release(self):
        name = "flash_attn-2.8.3.post2+cu12torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl"
        offers = [
            Offer(name, "https://mirror-b/" + name, "mirror[1] https://mirror-b/", 2),
            Offer(name, "file:///vol/" + name, "cache", 0),
            Offer(name, "https://mirror-a/" + name, "mirror[0] https://mirror-a/", 1),
        ]
        plan = resolve(RUNPOD_PYTORCH_24, VersionRequest.parse("==2.8.3.post2"), offers=offers, upstream_url=UPSTREAM)
        assert [c.source.split()[0] for c in plan.candidates] == ["cache", "mirror[0]", "mirror[1]", "upstream"]

    def test_offers_that_do_not_fit_are_traced_with_both_sides(self):
        offers = [
            Offer("flash_attn-2.8.3+cu12torch2.5cxx11abiFALSE-cp311-cp311-linux_x86_64.whl", "u", "cache", 0),
            Offer("flash_attn-2.8.3+cu12torch2.4cxx11abiTRUE-cp311-cp311-linux_x86_64.whl", "u", "cache", 0),
            Offer("flash_attn-2.8.3-cp311-cp311-linux_x86_64.whl", "u", "cache", 0),
        ]
        plan = resolve(RUNPOD_PYTORCH_24, VersionRequest.parse("auto"), offers=offers, upstream_url=None)
        reasons = [d.reason for d in plan.trace if not d.accepted]
        assert "built for torch 2.5, runtime has torch 2.4.0+cu124" in reasons
        assert "built with cxx11abi TRUE, torch uses FALSE" in reasons
        assert any("no '+cuXXtorchX.Ycxx11abiX' label" in r for r in reasons)
        assert plan.status == "unsupported"

    def test_known_bad_wheel_is_skipped_with_the_earlier_reason(self):
        plan = resolve(RUNPOD_PYTORCH_24, VersionRequest.parse("auto"), upstream_url=UPSTREAM, known_bad={
            "flash_attn-2.8.3.post2+cu12torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl": "at import: undefined symbol"})
        assert plan.candidates[0].version == "2.8.3.post1"
        assert any("failed verification here before: at import: undefined symbol" in d.reason for d in plan.trace)


class TestVersionRequest:
    @pytest.mark.parametrize("text, allowed, refused", [
        ("auto", ["2.5.0", "2.8.3.post2"], []),
        ("2.8.3", ["2.8.3"], ["2.8.3.post1", "2.8.2"]),
        (">=2.7,<2.9", ["2.7.0.post2", "2.8.3.post2"], ["2.6.3", "2.9.0"]),
        ("~=2.8.0", ["2.8.3.post2"], ["2.7.4.post1"]),
    ])
    def test_forms(self, text, allowed, refused):
        request = VersionRequest.parse(text)
        assert all(request.allows(v) for v in allowed)
        assert not any(request.allows(v) for v in refused)

    @pytest.mark.parametrize("text", ["latest", "2.8.x", ">=two", "==", "2..8"])
    def test_bad_request_names_itself_and_the_forms(self, text):
        with pytest.raises(InvalidVersionRequest, match="auto.*exact.*range"):
            VersionRequest.parse(text)


class TestSeedRowsAt282:
    """The three CUDA rows of the seed (cu124, cu121, cu118) with torch 2.4 on Python 3.10, asking for 2.8.2.

    Expected names come from upstream's own files at v2.8.2 (tests/data/upstream_workflows.json):
    setup.py's get_wheel_url() names the file, the workflow's matrix says whether it was built.
    """

    FACTS = {f["version"]: f for f in json.loads((Path(__file__).parent.parent / "data" / "upstream_workflows.json").read_text())}

    @classmethod
    def setup_py_name(cls, torch_cuda: str) -> str:
        """get_wheel_url() at v2.8.2, restated: CUDA 11 -> 11.8, else 12.3; the label is the major alone."""
        setup = cls.FACTS["2.8.2"]["setup"]
        assert setup["label"] == "major" and setup["cuda"] == {"11": "11.8", "other": "12.3"}
        major = torch_cuda.split(".")[0]
        label = setup["cuda"].get(major, setup["cuda"]["other"]).split(".")[0]
        return f"flash_attn-2.8.2+cu{label}torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl"

    @classmethod
    def built(cls, torch_cuda_major: str) -> bool:
        """Whether v2.8.2's matrix ran a job for torch 2.4 / Python 3.10 / ABI FALSE on this CUDA major."""
        w = cls.FACTS["2.8.2"]["workflow"]
        return any(c.split(".")[0] == torch_cuda_major for c in w["cuda"]) and "2.4.0" in w["torch"] and "3.10" in w["python"]

    @staticmethod
    def runtime(torch_cuda: str) -> Fingerprint:
        return Fingerprint(torch_version=f"2.4.0+cu{torch_cuda.replace('.', '')}", torch_cuda=torch_cuda, cxx11abi=False,
                           python="3.10", platform="linux_x86_64", glibc="2.35", compute_capability="8.6",
                           driver="550.127.05")

    @pytest.mark.parametrize("torch_cuda", ["12.4", "12.1"])
    def test_cuda_12_rows_get_the_cu12_wheel(self, torch_cuda):
        expected = self.setup_py_name(torch_cuda)
        assert expected == "flash_attn-2.8.2+cu12torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl"
        assert self.built("12")
        plan = resolve(self.runtime(torch_cuda), VersionRequest.parse("2.8.2"), upstream_url=UPSTREAM)
        assert [(c.filename, c.url) for c in plan.candidates] == [(expected, f"{UPSTREAM}/v2.8.2/{expected}")]

    def test_cuda_118_row_is_refused_v282_built_no_cu11(self):
        # setup.py would ask for a cu11 name, but v2.8.2's matrix builds CUDA 12.9.1 alone: that file never existed.
        assert self.setup_py_name("11.8") == "flash_attn-2.8.2+cu11torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl"
        assert not self.built("11") and self.FACTS["2.8.2"]["workflow"]["cuda"] == ["12.9.1"]
        plan = resolve(self.runtime("11.8"), VersionRequest.parse("2.8.2"), upstream_url=UPSTREAM)
        assert plan.status == "unsupported" and plan.candidates == ()
        assert "release 2.8.2 built no CUDA 11 wheels (built: cu12)" in plan.reason
        assert "torch 2.4.0+cu118, CUDA 11.8, cp310" in plan.reason
