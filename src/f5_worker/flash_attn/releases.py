"""Which wheels each upstream flash-attn release published, as one table read from upstream's own files.

Each tag's row restates two files of Dao-AILab/flash-attention at that tag:

- ``.github/workflows/publish.yml``: the ``build_wheels`` job's matrix (``Matrix``) in the
  workflow's own values (runner OS, CUDA toolkit, torch, Python, C++ ABI, ``exclude``) and how its
  ``tmpname`` writes the ``cuXX`` label; every job of the matrix renames its wheel
  ``flash_attn-{version}+cu{label}torch{major.minor}cxx11abi{ABI}-cpXY-cpXY-linux_x86_64.whl``
  and uploads it to the tag's release;
- ``setup.py``: ``get_wheel_url()`` (``SetupRule``), the name a ``pip install flash-attn`` on
  that version asks the release for.

The runner OS fixes the glibc a wheel needs (it links against the runner's): ``GLIBC_OF_RUNNER``.
tests/data/upstream_workflows.json holds the same facts as read by tests/data/read_upstream.py, and
tests/flash_attn/test_releases.py holds this table to it, row by row. A release known only from
PyPI (no tag to read) says what is missing in ``missing``; the resolver repeats it in its trace.
docs/flash-attn-releases.md is the narrative, with the sources of everything not read at a tag.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from packaging.version import Version

from .wheelname import FlashAttnWheel

__all__ = ["Matrix", "SetupRule", "Release", "RELEASES", "release_of", "GLIBC_OF_RUNNER", "REPOSITORY",
           "DRIVER_MIN_FOR_CUDA", "MIN_COMPUTE_CAPABILITY"]

REPOSITORY = "Dao-AILab/flash-attention"
# FlashAttention-2 kernels need Ampere or newer.
MIN_COMPUTE_CAPABILITY = "8.0"
# The oldest driver each CUDA major's runtime runs on (CUDA's release notes, "minor version compatibility").
DRIVER_MIN_FOR_CUDA: Mapping[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580"}
# GitHub's hosted runner images: Ubuntu 20.04 ships glibc 2.31, Ubuntu 22.04 glibc 2.35. A wheel built
# there needs at least that glibc (symbols are versioned by the glibc that introduced them; reports of
# "GLIBC_2.32 not found" with 2.8.x wheels name only the first one missing on an older system).
GLIBC_OF_RUNNER: Mapping[str, str] = {"ubuntu-20.04": "2.31", "ubuntu-22.04": "2.35"}
# The platform tag bdist_wheel gives a wheel built on each runner (x86-64 machines).
_RUNNER_PLATFORM: Mapping[str, str] = {"ubuntu-20.04": "linux_x86_64", "ubuntu-22.04": "linux_x86_64"}


def _rule(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


@dataclass(frozen=True)
class Matrix:
    """``build_wheels``'s ``strategy.matrix`` in publish.yml at one tag, values as the workflow writes them."""

    os: tuple[str, ...]
    cuda: tuple[str, ...]  # toolkit versions: "11.8.0", "12.4.1"
    torch: tuple[str, ...]  # "2.1.2", "2.6.0.dev20241010" (a nightly is labelled by its major.minor)
    python: tuple[str, ...]  # "3.10"
    label: str  # "major.minor" (tmpname=cu${MATRIX_CUDA_VERSION}: cu118, cu122) or "major" (${WHEEL_CUDA_VERSION}: cu12)
    exclude: tuple[Mapping[str, str], ...] = ()  # keys: os, python-version, torch-version, cuda-version, cxx11_abi
    cxx11_abi: tuple[str, ...] = ("FALSE", "TRUE")

    def cuda_label(self, toolkit: str) -> str:
        major, minor = toolkit.split(".")[:2]
        return major if self.label == "major" else major + minor

    def jobs(self) -> Iterator[dict[str, str]]:
        """Every job the matrix runs: its product minus each ``exclude`` entry that matches all its keys."""
        for os_, python, torch, cuda, abi in itertools.product(self.os, self.python, self.torch, self.cuda, self.cxx11_abi):
            job = {"os": os_, "python-version": python, "torch-version": torch, "cuda-version": cuda, "cxx11_abi": abi}
            if not any(all(job.get(k) == v for k, v in rule.items()) for rule in self.exclude):
                yield job


@dataclass(frozen=True)
class SetupRule:
    """``get_wheel_url()`` in setup.py at one tag: the wheel a plain ``pip install flash-attn`` asks for."""

    cuda: Mapping[str, str]  # torch's CUDA major ("11") or "other" -> the CUDA it asks for ("11.8")
    label: str  # "major.minor" | "major"
    linux_platform: str  # "linux_x86_64", or "linux_{platform.uname().machine}" (2.5.7 on)
    python_requires: str

    def label_for(self, cuda_major: int) -> str:
        asked = self.cuda.get(str(cuda_major), self.cuda["other"])
        major, minor = asked.split(".")[:2]
        return major if self.label == "major" else major + minor

    def wheel_name(self, version: str, torch_cuda: str, torch_version: str, cxx11abi: bool, python: str,
                   machine: str = "x86_64") -> str:
        """The file name setup.py's ``get_wheel_url()`` computes, for a torch built with ``torch_cuda``."""
        torch_release = Version(torch_version).release
        platform = "linux_x86_64" if self.linux_platform == "linux_x86_64" else f"linux_{machine}"
        tag = "cp" + python.replace(".", "")
        return (f"flash_attn-{version}+cu{self.label_for(int(torch_cuda.split('.')[0]))}"
                f"torch{torch_release[0]}.{torch_release[1]}cxx11abi{str(cxx11abi).upper()}-{tag}-{tag}-{platform}.whl")


@dataclass(frozen=True)
class Release:
    version: str
    tag: str | None  # "v2.8.2"; None for a release seen only on PyPI
    commit: str | None  # the tag's commit in REPOSITORY
    date: str | None  # the tag commit's date
    matrix: Matrix | None  # None: nothing was built from a matrix we could read
    setup: SetupRule
    on_pypi: bool  # PyPI has its sdist; publish_package `needs` every build job, so False means one failed
    # Real assets outside the tag's matrix (uploaded later, or named unlike the tag), by file name, and
    # the glibc they are known to need (None: unknown; verification decides).
    extra: tuple[str, ...] = ()
    extra_min_glibc: str | None = None
    no_wheels: str | None = None  # why the tag's run uploaded no wheel at all, when we know it
    missing: str | None = None  # what evidence is missing; None when every fact was read at the tag
    notes: str = ""
    _names: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(w.filename for w in self.wheels()))

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    @property
    def confirmed(self) -> bool:
        return self.missing is None

    @property
    def source(self) -> str:
        """Where this row's facts were read."""
        if self.tag:
            return f"{REPOSITORY}@{self.tag} ({self.commit[:12]}): .github/workflows/publish.yml, setup.py"
        return f"PyPI sdist flash_attn-{self.version}.tar.gz: setup.py only"

    @property
    def cuda_labels(self) -> dict[int, str]:
        """CUDA major -> the ``cuXX`` label of the wheels the matrix built."""
        if self.matrix is None or self.no_wheels:
            return {}
        return {int(c.split(".")[0]): self.matrix.cuda_label(c) for c in self.matrix.cuda}

    @property
    def torch(self) -> tuple[str, ...]:
        """The torch labels (major.minor) of the matrix."""
        if self.matrix is None:
            return ()
        return tuple(".".join(t.split(".")[:2]) for t in self.matrix.torch)

    @property
    def python(self) -> tuple[str, ...]:
        return self.matrix.python if self.matrix else ()

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(sorted({_RUNNER_PLATFORM[o] for o in self.matrix.os})) if self.matrix else ()

    @property
    def min_glibc(self) -> str | None:
        """The glibc the matrix's wheels need: the newest of its runners'."""
        if self.matrix is None:
            return None
        return max((GLIBC_OF_RUNNER[o] for o in self.matrix.os), key=lambda v: tuple(map(int, v.split("."))))

    def min_glibc_of(self, wheel: FlashAttnWheel) -> str | None:
        return self.extra_min_glibc if wheel.filename in self.extra else self.min_glibc

    def wheels(self) -> Iterator[FlashAttnWheel]:
        """Every wheel the tag's matrix built (none when ``no_wheels`` says its run built nothing)."""
        if self.matrix is None or self.no_wheels:
            return
        for job in self.matrix.jobs():
            yield FlashAttnWheel(
                version=self.version,
                cuda_label=self.matrix.cuda_label(job["cuda-version"]),
                torch=".".join(job["torch-version"].split(".")[:2]),
                cxx11abi=job["cxx11_abi"] == "TRUE",
                python_tag="cp" + job["python-version"].replace(".", ""),
                platform=_RUNNER_PLATFORM[job["os"]],
            )

    def published(self, wheel: FlashAttnWheel) -> bool:
        return wheel.filename in self._names

    def extra_wheels(self) -> Iterator[FlashAttnWheel]:
        return (FlashAttnWheel.parse(name) for name in self.extra)


def _matrix(os: str, cuda: str, label: str, torch: str, python: str, exclude: tuple[str, ...] = ()) -> Matrix:
    return Matrix(tuple(os.split()), tuple(cuda.split()), tuple(torch.split()), tuple(python.split()), label,
                  tuple(_rule(r) for r in exclude))


# -- get_wheel_url() at each tag (tests/data/upstream_workflows.json, "setup") ---------------------
_SETUP_122_X86 = SetupRule({"11": "11.8", "other": "12.2"}, "major.minor", "linux_x86_64", ">=3.7")  # v2.5.0-v2.5.6
_SETUP_122 = SetupRule({"11": "11.8", "other": "12.2"}, "major.minor", "linux_{platform.uname().machine}", ">=3.7")
_SETUP_122_PY38 = SetupRule({"11": "11.8", "other": "12.2"}, "major.minor", "linux_{platform.uname().machine}", ">=3.8")
_SETUP_123 = SetupRule({"11": "11.8", "other": "12.3"}, "major.minor", "linux_{platform.uname().machine}", ">=3.8")
_SETUP_MAJOR_123_PY38 = SetupRule({"11": "11.8", "other": "12.3"}, "major", "linux_{platform.uname().machine}", ">=3.8")
_SETUP_MAJOR_124 = SetupRule({"11": "11.8", "other": "12.4"}, "major", "linux_{platform.uname().machine}", ">=3.8")
_SETUP_MAJOR_123 = SetupRule({"11": "11.8", "other": "12.3"}, "major", "linux_{platform.uname().machine}", ">=3.9")
_SETUP_MAJOR_13 = SetupRule({"11": "11.8", "12": "12.3", "other": "13.0"}, "major", "linux_{platform.uname().machine}",
                            ">=3.9")

# -- build_wheels' matrix at each tag (tests/data/upstream_workflows.json, "workflow") ------------
_M250 = _matrix(  # first at v2.5.0
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="1.12.1 1.13.1 2.0.1 2.1.1 2.2.0.dev20231130",
    python="3.7 3.8 3.9 3.10 3.11",
    exclude=(
        "torch-version=1.12.1 python-version=3.11",
        "torch-version=2.0.1 python-version=3.7",
        "torch-version=2.1.1 python-version=3.7",
        "torch-version=2.2.0.dev20231130 python-version=3.7",
        "torch-version=1.12.1 cuda-version=12.2.2",
        "torch-version=1.13.1 cuda-version=12.2.2",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M251 = _matrix(  # first at v2.5.1
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="1.12.1 1.13.1 2.0.1 2.1.2 2.2.0.dev20231106 2.3.0.dev20240126",
    python="3.7 3.8 3.9 3.10 3.11",
    exclude=(
        "torch-version=1.12.1 python-version=3.11",
        "torch-version=2.0.1 python-version=3.7",
        "torch-version=2.1.2 python-version=3.7",
        "torch-version=2.2.0.dev20231106 python-version=3.7",
        "torch-version=2.3.0.dev20240126 python-version=3.7",
        "torch-version=1.12.1 cuda-version=12.2.2",
        "torch-version=1.13.1 cuda-version=12.2.2",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M252 = _matrix(  # first at v2.5.2
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="1.12.1 1.13.1 2.0.1 2.1.2 2.2.0 2.3.0.dev20240126",
    python="3.7 3.8 3.9 3.10 3.11",
    exclude=(
        "torch-version=1.12.1 python-version=3.11",
        "torch-version=2.0.1 python-version=3.7",
        "torch-version=2.1.2 python-version=3.7",
        "torch-version=2.2.0 python-version=3.7",
        "torch-version=2.3.0.dev20240126 python-version=3.7",
        "torch-version=1.12.1 cuda-version=12.2.2",
        "torch-version=1.13.1 cuda-version=12.2.2",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M256 = _matrix(  # first at v2.5.6
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="1.12.1 1.13.1 2.0.1 2.1.2 2.2.0 2.3.0.dev20240105",
    python="3.7 3.8 3.9 3.10 3.11",
    exclude=(
        "torch-version=1.12.1 python-version=3.11",
        "torch-version=2.0.1 python-version=3.7",
        "torch-version=2.1.2 python-version=3.7",
        "torch-version=2.2.0 python-version=3.7",
        "torch-version=2.3.0.dev20240105 python-version=3.7",
        "torch-version=1.12.1 cuda-version=12.2.2",
        "torch-version=1.13.1 cuda-version=12.2.2",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M257 = _matrix(  # first at v2.5.7
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="1.12.1 1.13.1 2.0.1 2.1.2 2.2.0 2.3.0.dev20240207",
    python="3.7 3.8 3.9 3.10 3.11",
    exclude=(
        "torch-version=1.12.1 python-version=3.11",
        "torch-version=2.0.1 python-version=3.7",
        "torch-version=2.1.2 python-version=3.7",
        "torch-version=2.2.0 python-version=3.7",
        "torch-version=2.3.0.dev20240207 python-version=3.7",
        "torch-version=1.12.1 cuda-version=12.2.2",
        "torch-version=1.13.1 cuda-version=12.2.2",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M258 = _matrix(  # first at v2.5.8
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="1.12.1 1.13.1 2.0.1 2.1.2 2.2.2 2.3.0",
    python="3.7 3.8 3.9 3.10 3.11",
    exclude=(
        "torch-version=1.12.1 python-version=3.11",
        "torch-version=2.0.1 python-version=3.7",
        "torch-version=2.1.2 python-version=3.7",
        "torch-version=2.2.2 python-version=3.7",
        "torch-version=2.3.0 python-version=3.7",
        "torch-version=1.12.1 cuda-version=12.2.2",
        "torch-version=1.13.1 cuda-version=12.2.2",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M259 = _matrix(  # first at v2.5.9
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="1.12.1 1.13.1 2.0.1 2.1.2 2.2.2 2.3.0 2.4.0.dev20240407",
    python="3.7 3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=1.12.1 python-version=3.12",
        "torch-version=1.13.1 python-version=3.12",
        "torch-version=2.0.1 python-version=3.12",
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=1.12.1 python-version=3.11",
        "torch-version=2.0.1 python-version=3.7",
        "torch-version=2.1.2 python-version=3.7",
        "torch-version=2.2.2 python-version=3.7",
        "torch-version=2.3.0 python-version=3.7",
        "torch-version=2.4.0.dev20240407 python-version=3.7",
        "torch-version=1.12.1 cuda-version=12.2.2",
        "torch-version=1.13.1 cuda-version=12.2.2",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M260 = _matrix(  # first at v2.6.0
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="2.0.1 2.1.2 2.2.2 2.3.1 2.4.0.dev20240512",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.0.1 python-version=3.12",
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M260p1 = _matrix(  # first at v2.6.0.post1
    os="ubuntu-20.04", cuda="11.8.0 12.2.2", label="major.minor",
    torch="2.0.1 2.1.2 2.2.2 2.3.1 2.4.0.dev20240514",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.0.1 python-version=3.12",
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.0.1 cuda-version=12.2.2",
    ),
)
_M261 = _matrix(  # first at v2.6.1
    os="ubuntu-20.04", cuda="11.8.0 12.3.2", label="major.minor",
    torch="2.0.1 2.1.2 2.2.2 2.3.1 2.4.0.dev20240514",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.0.1 python-version=3.12",
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.0.1 cuda-version=12.3.2",
    ),
)
_M262 = _matrix(  # first at v2.6.2
    os="ubuntu-20.04", cuda="11.8.0 12.3.2", label="major.minor",
    torch="2.0.1 2.1.2 2.2.2 2.3.1 2.4.0.dev20240527",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.0.1 python-version=3.12",
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.0.1 cuda-version=12.3.2",
    ),
)
_M263 = _matrix(  # first at v2.6.3
    os="ubuntu-20.04", cuda="11.8.0 12.3.2", label="major.minor",
    torch="2.0.1 2.1.2 2.2.2 2.3.1 2.4.0",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.0.1 python-version=3.12",
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.0.1 cuda-version=12.3.2",
    ),
)
_M270 = _matrix(  # first at v2.7.0
    os="ubuntu-20.04", cuda="11.8.0 12.3.2", label="major",
    torch="2.1.2 2.2.2 2.3.1 2.4.0 2.5.1",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.1.2 python-version=3.12",
    ),
)
_M270p1 = _matrix(  # first at v2.7.0.post1
    os="ubuntu-20.04", cuda="11.8.0 12.4.1", label="major",
    torch="2.1.2 2.2.2 2.3.1 2.4.0 2.5.1",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.1.2 python-version=3.12",
    ),
)
_M270p2 = _matrix(  # first at v2.7.0.post2
    os="ubuntu-20.04", cuda="11.8.0 12.4.1", label="major",
    torch="2.1.2 2.2.2 2.3.1 2.4.0 2.5.1",
    python="3.8 3.9 3.10 3.11 3.12",
    exclude=(
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.5.1 python-version=3.8",
    ),
)
_M271 = _matrix(  # first at v2.7.1
    os="ubuntu-20.04", cuda="11.8.0 12.4.1", label="major",
    torch="2.1.2 2.2.2 2.3.1 2.4.0 2.5.1 2.6.0.dev20241010",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.1.2 python-version=3.13",
        "torch-version=2.2.2 python-version=3.13",
        "torch-version=2.3.1 python-version=3.13",
        "torch-version=2.4.0 python-version=3.13",
    ),
)
_M271p2 = _matrix(  # first at v2.7.1.post2
    os="ubuntu-20.04", cuda="11.8.0 12.3.2", label="major",
    torch="2.1.2 2.2.2 2.3.1 2.4.0 2.5.1 2.6.0.dev20241001",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.1.2 python-version=3.13",
        "torch-version=2.2.2 python-version=3.13",
        "torch-version=2.3.1 python-version=3.13",
        "torch-version=2.4.0 python-version=3.13",
    ),
)
_M274 = _matrix(  # first at v2.7.4
    os="ubuntu-20.04", cuda="12.4.1", label="major",
    torch="2.1.2 2.2.2 2.3.1 2.4.0 2.5.1 2.6.0",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.1.2 python-version=3.12",
        "torch-version=2.1.2 python-version=3.13",
        "torch-version=2.2.2 python-version=3.13",
        "torch-version=2.3.1 python-version=3.13",
        "torch-version=2.4.0 python-version=3.13",
    ),
)
_M274p1 = _matrix(  # first at v2.7.4.post1
    os="ubuntu-20.04", cuda="12.4.1", label="major",
    torch="2.2.2 2.3.1 2.4.0 2.5.1 2.6.0",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.2.2 python-version=3.13",
        "torch-version=2.3.1 python-version=3.13",
        "torch-version=2.4.0 python-version=3.13",
    ),
)
_M280 = _matrix(  # first at v2.8.0
    os="ubuntu-20.04", cuda="12.9.0", label="major",
    torch="2.4.0 2.5.1 2.6.0 2.7.1",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.4.0 python-version=3.13",
    ),
)
_M280p1 = _matrix(  # first at v2.8.0.post1
    os="ubuntu-22.04", cuda="12.9.0", label="major",
    torch="2.4.0 2.5.1 2.6.0 2.7.1",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.4.0 python-version=3.13",
    ),
)
_M281 = _matrix(  # first at v2.8.1
    os="ubuntu-22.04", cuda="12.9.1", label="major",
    torch="2.4.0 2.5.1 2.6.0 2.7.1",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.4.0 python-version=3.13",
    ),
)
_M283 = _matrix(  # first at v2.8.3
    os="ubuntu-22.04", cuda="12.9.1", label="major",
    torch="2.4.0 2.5.1 2.6.0 2.7.1 2.8.0",
    python="3.9 3.10 3.11 3.12 3.13",
    exclude=(
        "torch-version=2.4.0 python-version=3.13",
    ),
)


_NOT_ON_PYPI = ("not on PyPI: its run's publish_package job needs every build job, so at least one failed; the "
                "wheels of the jobs that passed were uploaded, and a missing one answers 404 (the next candidate "
                "is tried)")
# Assets uploaded after GitHub retired its ubuntu-20.04 runners (2025-04-15, actions/runner-images#11101): built
# on ubuntu-22.04 or newer, so glibc >= 2.35 (inferred from the runners left; not read at a tag).
_LATE_GLIBC = "2.35"


def _tag(version: str, commit: str, date: str, matrix: Matrix, setup: SetupRule, on_pypi: bool = True, **kw) -> Release:
    return Release(version, f"v{version}", commit, date, matrix, setup, on_pypi, **kw)


RELEASES: tuple[Release, ...] = (
    _tag("2.5.0", "197f2083a2f0953af9319cf4ce32d0bf2aae4bd8", "2024-01-22", _M250, _SETUP_122_X86,
         notes="its CUDA-12 excludes name 12.2.2, the matrix's own value: torch 1.12, 1.13, 2.0 built cu118 only"),
    _tag("2.5.1", "daf37a9d8a5883b22549d078a5e8f3c392cda853", "2024-01-29", _M251, _SETUP_122_X86, on_pypi=False,
         notes=_NOT_ON_PYPI),
    _tag("2.5.1.post1", "dc72d960a7fc903ee34b8df84a056620b354ec47", "2024-01-30", _M251, _SETUP_122_X86),
    _tag("2.5.2", "61a777247900f6c2a37376f3ffd7134385fdc95c", "2024-01-31", _M252, _SETUP_122_X86),
    _tag("2.5.3", "5cdabc2809095b98c311283125c05d222500c8ff", "2024-02-10", _M252, _SETUP_122_X86),
    _tag("2.5.4", "43950dda456e095969d842fca7a73c5bfe3cecd0", "2024-02-20", _M252, _SETUP_122_X86),
    _tag("2.5.5", "87a1277653fc55cd615f5341255e00c69d5c00a1", "2024-02-21", _M252, _SETUP_122_X86),
    _tag("2.5.6", "6c9e60de566800538fedad2ad5e6b7b55ca7f0c5", "2024-03-01", _M256, _SETUP_122_X86),
    _tag("2.5.7", "85881f547fd1053a7b4a2c3faad6690cca969279", "2024-04-07", _M257, _SETUP_122),
    _tag("2.5.8", "9a11f440d3a34f618b4ba814c825b109c6d7e8f5", "2024-04-26", _M258, _SETUP_122),
    _tag("2.5.9", "ce7350357869bab7a2d8665c37bdf326c9e98b61", "2024-05-26", _M259, _SETUP_122, on_pypi=False,
         notes=_NOT_ON_PYPI),
    _tag("2.5.9.post1", "e2e4333c955b829d0e6087d27ee435f55c80d3a5", "2024-05-26", _M259, _SETUP_122,
         notes="first matrix with Python 3.12 (torch 2.2 and newer)"),
    _tag("2.6.0", "da11d1b8535c489bb97fd16a253f38217b7d6bd5", "2024-07-10", _M260, _SETUP_122_PY38, on_pypi=False,
         notes=_NOT_ON_PYPI),
    _tag("2.6.0.post1", "116b05f9b0d51135d95b5d5d673b3bcd39e6a635", "2024-07-11", _M260p1, _SETUP_122_PY38,
         notes="last release labelled cu122"),
    _tag("2.6.1", "7551202cb2dd245432bc878447e19015c0af3c22", "2024-07-11", _M261, _SETUP_123,
         notes="CUDA 12 built with 12.3.2, labelled cu123"),
    _tag("2.6.2", "59594f2a67eb6a9de730b4f8fe90baa89c5439d3", "2024-07-23", _M262, _SETUP_123),
    _tag("2.6.3", "418d677192b483dfc1decfdf9aadca40b402485d", "2024-07-25", _M263, _SETUP_123),
    _tag("2.7.0", "c555642172e281cae6da8a6cff4dfd9ff678ae85", "2024-11-12", _M270, _SETUP_MAJOR_123_PY38, on_pypi=False,
         notes="first release labelled by the CUDA major alone (cu11, cu12); " + _NOT_ON_PYPI),
    _tag("2.7.0.post1", "241c682c9f807dd5e2667830ced93fdaa9cc3843", "2024-11-12", _M270p1, _SETUP_MAJOR_124,
         on_pypi=False, notes=_NOT_ON_PYPI),
    _tag("2.7.0.post2", "641db759ab7168e472909bc9ff1eda4a329de34f", "2024-11-12", _M270p2, _SETUP_MAJOR_124),
    _tag("2.7.1", "cc408f9fbfc53046b73f425773b2a3948bc1da2a", "2024-12-05", _M271, _SETUP_MAJOR_124, on_pypi=False,
         notes=_NOT_ON_PYPI),
    _tag("2.7.1.post1", "cf0f4c38ef4cfd861caa8173a39ef34e299c5048", "2024-12-05", _M271, _SETUP_MAJOR_124,
         on_pypi=False, notes=_NOT_ON_PYPI + "; its cu12torch2.6 assets were seen"),
    _tag("2.7.1.post2", "073afd5931d6672ff4899429f83a881ff8182fe2", "2024-12-06", _M271p2, _SETUP_MAJOR_123,
         on_pypi=False, notes=_NOT_ON_PYPI),
    _tag("2.7.1.post3", "e782d28692e7b6ce6cd8a5f095b211b7510fef9e", "2024-12-06", _M271p2, _SETUP_MAJOR_123,
         on_pypi=False, notes=_NOT_ON_PYPI),
    _tag("2.7.1.post4", "9375ac9322102ecd9441a0f27fb823df1e0c8650", "2024-12-06", _M271p2, _SETUP_MAJOR_123),
    _tag("2.7.2", "b7d29fb3b79f0b78b1c369a52aaa6628dabfb0d7", "2024-12-07", _M271p2, _SETUP_MAJOR_123, on_pypi=False,
         notes=_NOT_ON_PYPI),
    _tag("2.7.2.post1", "f86e3dd9192e41dee3814c4cfd8bbce4792e6753", "2024-12-07", _M271p2, _SETUP_MAJOR_123),
    _tag("2.7.3", "89c5a7dd4e6a8644575bd0c04a286f48c42763ec", "2025-01-10", _M271p2, _SETUP_MAJOR_123,
         notes="last release with CUDA 11 wheels"),
    _tag("2.7.4", "979702c87a8713a8e0a5e9fee122b90d2ef13be5", "2025-01-29", _M274, _SETUP_MAJOR_123, on_pypi=False,
         notes="CUDA 12.4.1 only: no cu11 wheel; " + _NOT_ON_PYPI + " (v2.7.4.post1, the same day, drops torch 2.1)"),
    _tag("2.7.4.post1", "5231d95fe13733fb534c01895f7ea88c6a6c7793", "2025-01-29", _M274p1, _SETUP_MAJOR_123,
         extra=(
             # torch 2.7 came out after the tag (2025-04-23): uploaded later, outside the matrix.
             "flash_attn-2.7.4.post1+cu12torch2.7cxx11abiTRUE-cp310-cp310-linux_x86_64.whl",
             "flash_attn-2.7.4.post1+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl",
             "flash_attn-2.7.4.post1+cu12torch2.7cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
             "flash_attn-2.7.4.post1+cu12torch2.7cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
         ),
         extra_min_glibc=_LATE_GLIBC,
         notes="CUDA 12.4.1 only: no cu11 wheel (setup.py still asks a CUDA 11 torch for cu11, which 404s); the "
               "torch2.7 extras fail with 'GLIBC_2.32 not found' on glibc 2.31 (issue #1762)"),
    _tag("2.8.0", "6f8f0406eea522735d590c2d7b46139167b95b6e", "2025-06-14", _M280, _SETUP_MAJOR_123, on_pypi=False,
         no_wheels="its matrix runs on ubuntu-20.04, which GitHub retired on 2025-04-15 (actions/runner-images#11101), "
                   "before this tag: no build job got a runner (v2.8.0.post1, the same day, moved to ubuntu-22.04: "
                   "commit 71f7ac25 '[CI] Compile with ubuntu-22.04 instead of ubuntu-20.04'); not on PyPI"),
    _tag("2.8.0.post1", "71f7ac258ac193bf2cecd2c82a0d6e22bcba157f", "2025-06-14", _M280p1, _SETUP_MAJOR_123,
         on_pypi=False, notes=_NOT_ON_PYPI + " (v2.8.0.post2 builds 'with NVCC_THREADS=2 to avoid OOM')"),
    _tag("2.8.0.post2", "de79b1361e0e6ade09b9b5ca3949cc088eee9965", "2025-06-14", _M280p1, _SETUP_MAJOR_123,
         notes="first release built on ubuntu-22.04 (glibc 2.35); CUDA 12 only"),
    _tag("2.8.1", "7b0bfcc3d1f69786f0c4277c582ad58acdfb297d", "2025-07-09", _M281, _SETUP_MAJOR_123),
    _tag("2.8.2", "7321879fde54f09ed94f7f6ce9377e2f4cf1fac0", "2025-07-23", _M281, _SETUP_MAJOR_123),
    _tag("2.8.3", "060c9188beec3a8b62b33a3bfa6d5d2d44975fab", "2025-08-14", _M283, _SETUP_MAJOR_123,
         extra=(
             # Uploaded later, outside the matrix (cp312, ABI TRUE): main's publish.yml gained
             # ubuntu-22.04-arm and CUDA 13 in dfb66499 (2025-09-05).
             "flash_attn-2.8.3+cu12torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
             "flash_attn-2.8.3+cu12torch2.9cxx11abiTRUE-cp312-cp312-linux_aarch64.whl",
             "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
             "flash_attn-2.8.3+cu13torch2.10cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
             "flash_attn-2.8.3+cu13torch2.10cxx11abiTRUE-cp312-cp312-linux_aarch64.whl",
         ),
         extra_min_glibc=_LATE_GLIBC,
         notes="setup.py asks a CUDA 13 torch for a cu12 wheel, which cannot load; the resolver matches the CUDA "
               "major instead, which reaches the cu13 extras"),
    _tag("2.8.3.post1", "a8aa52b1ab3e9ca574c8a33b3f35afc017ffa2e2", "2026-06-10", _M283, _SETUP_MAJOR_13,
         extra=(
             # Named 2.8.3, not 2.8.3.post1, although served under the v2.8.3.post1 tag.
             "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
             "flash_attn-2.8.3+cu13torch2.9cxx11abiTRUE-cp312-cp312-linux_aarch64.whl",
         ),
         extra_min_glibc=_LATE_GLIBC,
         notes="the tag's matrix is v2.8.3's (CUDA 12.9.1 only); setup.py labels CUDA 13 as cu13 from here; its "
               "cu13 assets carry the version 2.8.3 in their names"),
    Release(
        "2.8.3.post2", None, None, None, _M283, _SETUP_MAJOR_13, True,
        missing="no tag v2.8.3.post2 in the repository (newest commit read: 2026-08-15, newest tag v2.8.3.post1); "
                "PyPI has its sdist (uploaded 2026-10-14), which carries no workflow: the build matrix is ASSUMED "
                "to be v2.8.3.post1's, and no asset of this release has been seen",
        notes="setup.py in the sdist (sha256 d0f9f0b08a986cdeadbffcf5ec8b3a8f514366c68ad1853d3ab061bc83cc340b) is "
              "v2.8.3.post1's, byte for byte"),
)


def release_of(version: str) -> Release | None:
    wanted = Version(version)
    return next((r for r in RELEASES if r.parsed_version == wanted), None)
