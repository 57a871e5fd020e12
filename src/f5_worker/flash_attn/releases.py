"""Which wheels each upstream flash-attn release published, as one table.

Each ``Release`` restates the build matrix of upstream's release workflow
(``.github/workflows/publish.yml``) at that tag, in the same terms: lists of
CUDA, torch, Python and C++ ABI values, and the workflow's own ``exclude``
entries. ``cuda_labels`` restates how that tag's ``setup.py`` (``get_wheel_url``)
turned ``torch.version.cuda`` into the ``cuXX`` part of the file name. The
research behind each row, with citations, is in docs/flash-attn-releases.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from packaging.version import Version

from .wheelname import FlashAttnWheel

__all__ = ["Release", "RELEASES", "release_of", "DRIVER_MIN_FOR_CUDA", "MIN_COMPUTE_CAPABILITY"]

# FlashAttention-2 kernels need Ampere or newer.
MIN_COMPUTE_CAPABILITY = "8.0"
# The oldest driver each CUDA major's runtime runs on (CUDA's release notes, "minor version compatibility").
DRIVER_MIN_FOR_CUDA: Mapping[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580"}


@dataclass(frozen=True)
class Release:
    version: str
    cuda_labels: Mapping[int, str]  # CUDA major of torch -> label after "cu" in the file name
    torch: tuple[str, ...]  # torch major.minor values in the matrix
    python: tuple[str, ...]  # "3.9", ...
    cxx11abi: tuple[bool, ...] = (False, True)
    platforms: tuple[str, ...] = ("linux_x86_64",)
    min_glibc: str | None = None  # from the build image; None when the wheels run on any glibc we meet
    # Matrix entries the workflow excluded; keys among torch, python, cuda (major), cxx11abi.
    exclude: tuple[Mapping[str, object], ...] = ()
    # Real assets outside the matrix (uploaded later, or named unlike the tag), by file name.
    extra: tuple[str, ...] = ()
    confirmed: bool = True  # False: the matrix is inferred, not read from the tag (see the notes)
    notes: str = ""

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    def _excluded(self, combo: Mapping[str, object]) -> bool:
        return any(all(combo.get(k) == v for k, v in rule.items()) for rule in self.exclude)

    def wheels(self) -> Iterator[FlashAttnWheel]:
        """Every wheel this release published, as the workflow's matrix minus its excludes."""
        for cuda, torch, python, abi, platform in itertools.product(
            sorted(self.cuda_labels), self.torch, self.python, self.cxx11abi, self.platforms
        ):
            if self._excluded({"cuda": cuda, "torch": torch, "python": python, "cxx11abi": abi}):
                continue
            yield FlashAttnWheel(
                version=self.version,
                cuda_label=self.cuda_labels[cuda],
                torch=torch,
                cxx11abi=abi,
                python_tag="cp" + python.replace(".", ""),
                platform=platform,
            )

    def published(self, wheel: FlashAttnWheel) -> bool:
        return wheel in set(self.wheels())

    def extra_wheels(self) -> Iterator[FlashAttnWheel]:
        return (FlashAttnWheel.parse(name) for name in self.extra)


def _r(version: str, cuda_labels: dict, torch: str, python: str, **kw) -> Release:
    return Release(version, cuda_labels, tuple(torch.split()), tuple(python.split()), **kw)


def _x(*pairs: str) -> tuple[dict, ...]:
    """Excludes written as "torch=2.2,python=3.13"."""
    rules = []
    for pair in pairs:
        rule = dict(item.split("=") for item in pair.split(","))
        if "cuda" in rule:
            rule["cuda"] = int(rule["cuda"])
        rules.append(rule)
    return tuple(rules)


# The label setup.py asks for, per era (read from setup.py in each release's PyPI sdist):
# 2.5.0-2.6.0.post1 bin CUDA 12 to 12.2, 2.6.1-2.6.3 to 12.3, both as major+minor;
# from 2.7.0 the label is the major alone; 2.8.3.post1 adds 13.
_CU122 = {11: "118", 12: "122"}
_CU123 = {11: "118", 12: "123"}
_CU_MAJOR = {11: "11", 12: "12"}
_CU12 = {12: "12"}
_OLD_TORCH_EXCLUDES = _x("torch=1.12,python=3.11", "torch=2.0,python=3.7", "torch=2.1,python=3.7",
                         "torch=2.2,python=3.7", "torch=2.3,python=3.7", "cuda=12,torch=1.12",
                         "cuda=12,torch=1.13", "cuda=12,torch=2.0")
_PY313_EXCLUDES = _x("torch=2.2,python=3.13", "torch=2.3,python=3.13", "torch=2.4,python=3.13")
_INFERRED = "matrix inferred from neighbouring workflow states and real asset names, not read at this tag"

RELEASES: tuple[Release, ...] = (
    _r("2.5.0", _CU122, "1.12 1.13 2.0 2.1 2.2", "3.7 3.8 3.9 3.10 3.11", min_glibc="2.31",
       exclude=_OLD_TORCH_EXCLUDES,
       notes="publish.yml before PR #793; its CUDA-12 excludes name 12.2.0 while the matrix has 12.2.2, "
             "so they matched nothing (no such asset was ever seen); built on ubuntu-20.04"),
    *(_r(v, _CU122, "1.12 1.13 2.0 2.1 2.2 2.3", "3.7 3.8 3.9 3.10 3.11", min_glibc="2.31",
         exclude=_OLD_TORCH_EXCLUDES, confirmed=False, notes=_INFERRED + "; the tag 2.5.1 has only 2.5.1.post1 on PyPI")
      for v in ("2.5.1.post1", "2.5.2", "2.5.3", "2.5.4", "2.5.5")),
    *(_r(v, _CU122, "2.0 2.1 2.2 2.3", "3.8 3.9 3.10 3.11", min_glibc="2.31", confirmed=False, notes=_INFERRED)
      for v in ("2.5.6", "2.5.7", "2.5.8")),
    _r("2.5.9.post1", _CU122, "2.0 2.1 2.2 2.3 2.4", "3.8 3.9 3.10 3.11", min_glibc="2.31", confirmed=False, notes=_INFERRED),
    _r("2.6.0", _CU122, "2.2 2.3 2.4", "3.8 3.9 3.10 3.11 3.12", min_glibc="2.31", confirmed=False,
       notes="GitHub tag only (PyPI has 2.6.0.post1); " + _INFERRED),
    _r("2.6.0.post1", _CU122, "2.2 2.3 2.4", "3.8 3.9 3.10 3.11 3.12", min_glibc="2.31",
       notes="last release whose setup.py bins CUDA 12 to cu122"),
    *(_r(v, _CU123, "2.0 2.1 2.2 2.3 2.4", "3.8 3.9 3.10 3.11 3.12", min_glibc="2.31",
         exclude=_x("torch=2.0,python=3.12", "torch=2.1,python=3.12", "cuda=12,torch=2.0"),
         confirmed=v == "2.6.3", notes="setup.py bins CUDA 12 to cu123")
      for v in ("2.6.1", "2.6.2", "2.6.3")),
    *(_r(v, _CU_MAJOR, "2.2 2.3 2.4 2.5", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.31", exclude=_PY313_EXCLUDES,
         confirmed=False, notes="GitHub tag only (PyPI has 2.7.0.post2); " + _INFERRED)
      for v in ("2.7.0", "2.7.0.post1")),
    _r("2.7.0.post2", _CU_MAJOR, "2.2 2.3 2.4 2.5", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.31",
       exclude=_PY313_EXCLUDES, notes="first release labelled by CUDA major only (cu11, cu12)"),
    *(_r(v, _CU_MAJOR, "2.2 2.3 2.4 2.5 2.6", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.31",
         exclude=_PY313_EXCLUDES, confirmed=v == "2.7.3",
         notes="torch2.6 wheels were built against a 2.6 nightly before torch 2.6.0 shipped")
      for v in ("2.7.1", "2.7.1.post1", "2.7.1.post2", "2.7.1.post3", "2.7.1.post4", "2.7.2", "2.7.2.post1", "2.7.3")),
    _r("2.7.4.post1", _CU_MAJOR, "2.2 2.3 2.4 2.5 2.6 2.7", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.31",
       exclude=_PY313_EXCLUDES,
       notes="last release with CUDA 11 wheels; its torch2.7 wheels were uploaded after the tag"),
    *(_r(v, _CU12, "2.4 2.5 2.6 2.7", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.32",
         exclude=_x("torch=2.4,python=3.13"), confirmed=v == "2.8.2",
         notes="built on ubuntu-22.04: wheels need glibc >= 2.32; CUDA 12 only")
      for v in ("2.8.0.post2", "2.8.1", "2.8.2")),
    _r("2.8.3", _CU12, "2.4 2.5 2.6 2.7 2.8", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.32",
       exclude=_x("torch=2.4,python=3.13"),
       extra=(
           "flash_attn-2.8.3+cu12torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
           "flash_attn-2.8.3+cu12torch2.9cxx11abiTRUE-cp312-cp312-linux_aarch64.whl",
           "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
           "flash_attn-2.8.3+cu13torch2.10cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
           "flash_attn-2.8.3+cu13torch2.10cxx11abiTRUE-cp312-cp312-linux_aarch64.whl",
       ),
       notes="cu13 and aarch64 wheels (cp312, ABI TRUE) were added outside the matrix; this release's setup.py "
             "would ask a CUDA 13 torch for a cu12 wheel, which cannot load"),
    _r("2.8.3.post1", {12: "12"}, "2.4 2.5 2.6 2.7 2.8", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.32",
       exclude=_x("torch=2.4,python=3.13"),
       extra=(
           # Named 2.8.3, not 2.8.3.post1, although served under the v2.8.3.post1 tag.
           "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
           "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_aarch64.whl",
       ),
       notes="its cu13 assets carry the version 2.8.3 in their names; setup.py labels CUDA 13 as cu13 from here"),
    _r("2.8.3.post2", {12: "12"}, "2.4 2.5 2.6 2.7 2.8", "3.9 3.10 3.11 3.12 3.13", min_glibc="2.32",
       exclude=_x("torch=2.4,python=3.13"), confirmed=False,
       notes="on PyPI (sdist only); no release assets were found: the matrix is assumed to be 2.8.3.post1's, "
             "so a missing asset 404s and the next candidate is tried"),
)


def release_of(version: str) -> Release | None:
    wanted = Version(version)
    return next((r for r in RELEASES if r.parsed_version == wanted), None)
