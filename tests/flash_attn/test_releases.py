from packaging.version import Version

from f5_worker.flash_attn.releases import RELEASES, release_of


def test_table_covers_every_pypi_release_from_250_to_283post2():
    # `pip index versions flash-attn` on 2026-11-24, from 2.5.0 on.
    pypi = ["2.5.0", "2.5.1.post1", "2.5.2", "2.5.3", "2.5.4", "2.5.5", "2.5.6", "2.5.7", "2.5.8", "2.5.9.post1",
            "2.6.0.post1", "2.6.1", "2.6.2", "2.6.3", "2.7.0.post2", "2.7.1.post4", "2.7.2.post1", "2.7.3",
            "2.7.4.post1", "2.8.0.post2", "2.8.1", "2.8.2", "2.8.3", "2.8.3.post1", "2.8.3.post2"]
    assert all(release_of(v) is not None for v in pypi)
    assert len({r.version for r in RELEASES}) == len(RELEASES)


def test_label_eras():
    assert release_of("2.6.0.post1").cuda_labels == {11: "118", 12: "122"}
    assert release_of("2.6.1").cuda_labels == {11: "118", 12: "123"}
    assert release_of("2.7.4.post1").cuda_labels == {11: "11", 12: "12"}
    # CUDA 11 builds stop at 2.7.4; CUDA 13 only ever as extra assets.
    assert all(11 not in r.cuda_labels for r in RELEASES if r.parsed_version > Version("2.7.4.post1"))


def test_glibc_232_from_28():
    assert all((r.min_glibc == "2.32") == (r.parsed_version >= Version("2.8.0")) for r in RELEASES)


def test_283_matrix_matches_its_48_assets_plus_5_extras():
    release = release_of("2.8.3")
    assert len(list(release.wheels())) == 48
    assert len(release.extra) == 5
    assert all(w.version == "2.8.3" for w in release.extra_wheels())


def test_excludes_remove_combinations():
    release = release_of("2.7.4.post1")
    names = {w.filename for w in release.wheels()}
    assert "flash_attn-2.7.4.post1+cu12torch2.2cxx11abiFALSE-cp313-cp313-linux_x86_64.whl" not in names
    assert "flash_attn-2.7.4.post1+cu12torch2.5cxx11abiFALSE-cp313-cp313-linux_x86_64.whl" in names
