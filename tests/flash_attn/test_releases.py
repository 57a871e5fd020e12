"""The release table, held row by row to what upstream's own files say at each tag.

tests/data/upstream_workflows.json is what tests/data/read_upstream.py read from
Dao-AILab/flash-attention: publish.yml's build matrix and setup.py's naming rule, at every tag
from v2.5.0 to v2.8.3.post1, and setup.py from the PyPI sdist of 2.8.3.post2 (which has no tag).
With ``F5_TEST_FLASH_ATTN_GIT`` naming a clone of that repository, the tags are read again here.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from f5_worker.flash_attn.releases import GLIBC_OF_RUNNER, RELEASES, release_of
from f5_worker.flash_attn.wheelname import FlashAttnWheel

DATA = Path(__file__).parent.parent / "data"
FACTS = json.loads((DATA / "upstream_workflows.json").read_text())
BY_VERSION = {fact["version"]: fact for fact in FACTS}
# `pip index versions flash-attn` on 2026-12-01, from 2.5.0 on (2.8.3.post2 is the newest).
PYPI = ["2.5.0", "2.5.1.post1", "2.5.2", "2.5.3", "2.5.4", "2.5.5", "2.5.6", "2.5.7", "2.5.8", "2.5.9.post1",
        "2.6.0.post1", "2.6.1", "2.6.2", "2.6.3", "2.7.0.post2", "2.7.1.post4", "2.7.2.post1", "2.7.3",
        "2.7.4.post1", "2.8.0.post2", "2.8.1", "2.8.2", "2.8.3", "2.8.3.post1", "2.8.3.post2"]


def test_one_row_per_tag_and_per_pypi_release_after_the_newest_tag():
    tags = [f["version"] for f in FACTS if f["tag"]]
    assert tags[0] == "2.5.0" and tags[-1] == "2.8.3.post1" and len(tags) == 37
    assert [r.version for r in RELEASES] == [f["version"] for f in FACTS]
    assert set(PYPI) <= {r.version for r in RELEASES}
    assert {r.version for r in RELEASES if r.on_pypi} == set(PYPI)


@pytest.mark.parametrize("fact", FACTS, ids=[f["version"] for f in FACTS])
class TestRowMatchesItsTag:
    def test_cited_where_it_was_read(self, fact):
        row = release_of(fact["version"])
        assert row.tag == fact["tag"] and row.commit == fact.get("commit") and row.date == fact.get("date")
        if row.tag:
            assert row.source.startswith(f"Dao-AILab/flash-attention@{row.tag} ({fact['commit'][:12]})")
            assert row.confirmed and row.missing is None
        else:  # known from PyPI only: says what is missing
            assert not row.confirmed and "no tag v2.8.3.post2" in row.missing and "ASSUMED" in row.missing

    def test_matrix(self, fact):
        row, workflow = release_of(fact["version"]), fact["workflow"] or BY_VERSION["2.8.3.post1"]["workflow"]
        matrix = row.matrix
        assert workflow["runs_on"] == "${{ matrix.os }}" and workflow["include"] == []
        assert (list(matrix.os), list(matrix.cuda), list(matrix.torch), list(matrix.python), list(matrix.cxx11_abi)) == (
            workflow["os"], workflow["cuda"], workflow["torch"], workflow["python"], workflow["cxx11_abi"])
        assert [dict(rule) for rule in matrix.exclude] == workflow["exclude"]
        assert matrix.label == workflow["label"]

    def test_setup_rule(self, fact):
        rule, setup = release_of(fact["version"]).setup, fact["setup"]
        assert (dict(rule.cuda), rule.label, rule.linux_platform, rule.python_requires) == (
            setup["cuda"], setup["label"], setup["linux_platform"], setup["python_requires"])

    def test_glibc_is_the_runners(self, fact):
        row = release_of(fact["version"])
        assert row.min_glibc == max(GLIBC_OF_RUNNER[o] for o in row.matrix.os)

    def test_setup_py_asks_for_the_label_the_workflow_uploads(self, fact):
        """For each CUDA the matrix builds, get_wheel_url() on a torch of that CUDA major names the same cuXX."""
        row = release_of(fact["version"])
        for major, label in row.cuda_labels.items():
            assert row.setup.label_for(major) == label


def wheel_count(fact) -> int:
    w = fact["workflow"]
    total = 0
    for os_ in w["os"]:
        for py in w["python"]:
            for torch in w["torch"]:
                for cuda in w["cuda"]:
                    for abi in w["cxx11_abi"]:
                        job = {"os": os_, "python-version": py, "torch-version": torch, "cuda-version": cuda, "cxx11_abi": abi}
                        total += not any(all(job[k] == v for k, v in rule.items()) for rule in w["exclude"])
    return total


@pytest.mark.parametrize("fact", [f for f in FACTS if f["tag"]], ids=[f["version"] for f in FACTS if f["tag"]])
def test_wheel_count_is_the_matrix_minus_its_excludes(fact):
    row = release_of(fact["version"])
    assert len(list(row.wheels())) == (0 if row.no_wheels else wheel_count(fact))


class TestKnownCorrections:
    """Rows the earlier table got wrong (it inferred them); the tag's files say otherwise."""

    def test_274_and_274post1_build_cuda_1241_only_no_cu11(self):
        for version in ("2.7.4", "2.7.4.post1"):
            row = release_of(version)
            assert row.matrix.cuda == ("12.4.1",) and row.cuda_labels == {12: "12"}
            assert not any(w.cuda_major == 11 for w in row.wheels())

    def test_270_builds_torch_21_to_25_on_python_38_to_312(self):
        row = release_of("2.7.0")
        assert row.torch == ("2.1", "2.2", "2.3", "2.4", "2.5")
        assert row.python == ("3.8", "3.9", "3.10", "3.11", "3.12")
        assert row.cuda_labels == {11: "11", 12: "12"}  # WHEEL_CUDA_VERSION: the major alone, from 2.7.0
        names = {w.filename for w in row.wheels()}
        assert "flash_attn-2.7.0+cu12torch2.1cxx11abiFALSE-cp311-cp311-linux_x86_64.whl" in names
        assert "flash_attn-2.7.0+cu12torch2.1cxx11abiFALSE-cp312-cp312-linux_x86_64.whl" not in names  # excluded

    def test_250_cuda12_excludes_match_the_matrix(self):
        names = {w.filename for w in release_of("2.5.0").wheels()}
        assert "flash_attn-2.5.0+cu118torch1.12cxx11abiFALSE-cp310-cp310-linux_x86_64.whl" in names
        assert "flash_attn-2.5.0+cu122torch1.12cxx11abiFALSE-cp310-cp310-linux_x86_64.whl" not in names

    def test_260_builds_torch_20_to_24(self):
        assert release_of("2.6.0.post1").torch == ("2.0", "2.1", "2.2", "2.3", "2.4")

    def test_280_built_nothing_its_runner_was_retired(self):
        row = release_of("2.8.0")
        assert row.matrix.os == ("ubuntu-20.04",) and not row.on_pypi
        assert list(row.wheels()) == [] and "retired" in row.no_wheels

    def test_28_on_ubuntu_2204_needs_glibc_235(self):
        assert release_of("2.8.0.post2").min_glibc == "2.35" and release_of("2.7.4.post1").min_glibc == "2.31"

    def test_cuda_11_ends_at_273(self):
        last_cu11 = max((r for r in RELEASES if 11 in r.cuda_labels), key=lambda r: r.parsed_version)
        assert last_cu11.version == "2.7.3"

    def test_label_eras(self):
        assert release_of("2.6.0.post1").cuda_labels == {11: "118", 12: "122"}
        assert release_of("2.6.1").cuda_labels == {11: "118", 12: "123"}
        assert release_of("2.7.3").cuda_labels == {11: "11", 12: "12"}


def test_283_matrix_is_48_wheels_plus_5_extras():
    release = release_of("2.8.3")
    assert len(list(release.wheels())) == 48
    assert len(release.extra) == 5 and all(w.version == "2.8.3" for w in release.extra_wheels())
    assert not set(release.extra) & {w.filename for w in release.wheels()}


def test_real_assets_are_in_their_release():
    """Every real asset name we have seen is one its release's matrix built, or one of its extras."""
    assets = json.loads((DATA / "upstream_assets.json").read_text())
    for asset in assets:
        row = release_of(asset["release"])
        assert asset["filename"] in row.extra or row.published(FlashAttnWheel.parse(asset["filename"])), asset


@pytest.mark.skipif(not os.environ.get("F5_TEST_FLASH_ATTN_GIT"), reason="set F5_TEST_FLASH_ATTN_GIT to a clone of "
                    "Dao-AILab/flash-attention to read the tags again")
def test_facts_read_again_from_the_tags():
    spec = importlib.util.spec_from_file_location("read_upstream", DATA / "read_upstream.py")
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    git_dir = os.environ["F5_TEST_FLASH_ATTN_GIT"]
    tags = [t[1:] for t in reader.tags(git_dir)]
    new = [t for t in tags if t not in BY_VERSION]
    assert not new, f"tags without a row: {new}; regenerate tests/data/upstream_workflows.json and add rows"
    for fact in FACTS:
        if fact["tag"]:
            assert reader.read_tag(git_dir, fact["tag"]) == fact
