"""Choose flash-attn wheels for a runtime: facts in, an ordered plan with its reasons out.

Nothing here touches the network, the disk or the GPU. The caller gathers the
facts once (``runtime.probe.detect()``, the volume's wheel cache, the mirrors'
listings) and passes them in; tests call ``resolve`` with fingerprints of real
runtimes and real upstream file names.

Preference order, the one sort key (``_preference``): newest release first; for the
same file, the volume's cache, then the mirrors in the order configured, then the
upstream GitHub release.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import InvalidVersionRequest
from ..runtime.fingerprint import Fingerprint, version_tuple
from .releases import DRIVER_MIN_FOR_CUDA, MIN_COMPUTE_CAPABILITY, RELEASES, Release
from .wheelname import FlashAttnWheel, NotAFlashAttnWheel

__all__ = ["VersionRequest", "Offer", "Candidate", "Decision", "Plan", "resolve", "check_environment"]

CACHE_RANK = 0
UPSTREAM_RANK = 1_000


@dataclass(frozen=True)
class VersionRequest:
    """``auto`` (newest with a wheel), an exact version, or a range."""

    text: str
    specifier: SpecifierSet

    @classmethod
    def parse(cls, text: str) -> VersionRequest:
        text = (text or "auto").strip()
        if text.lower() == "auto":
            return cls("auto", SpecifierSet())
        if text[0].isdigit():
            try:
                Version(text)
            except InvalidVersion:
                raise InvalidVersionRequest(text, "not a version") from None
            return cls(text, SpecifierSet(f"=={text}"))
        try:
            return cls(text, SpecifierSet(text))
        except InvalidSpecifier as exc:
            raise InvalidVersionRequest(text, str(exc)) from None

    def allows(self, version: str | Version) -> bool:
        return self.specifier.contains(version, prereleases=True)


@dataclass(frozen=True)
class Offer:
    """A wheel file some source holds: the volume's cache, or a mirror."""

    filename: str
    url: str
    source: str  # "cache", "mirror[0] https://…"
    rank: int  # CACHE_RANK, then 1, 2… for mirrors in configured order
    sha256: str | None = None


@dataclass(frozen=True)
class Candidate:
    filename: str
    url: str
    source: str
    version: str
    sha256: str | None = None
    rank: int = UPSTREAM_RANK

    def to_json(self) -> dict:
        data = asdict(self)
        del data["rank"]
        return data


@dataclass(frozen=True)
class Decision:
    """One line of the trace: what was considered, from where, and why it was taken or not."""

    subject: str
    accepted: bool
    reason: str
    source: str | None = None


@dataclass(frozen=True)
class Plan:
    status: str  # "ok" | "unsupported"
    reason: str | None
    request: str
    candidates: tuple[Candidate, ...] = ()
    trace: tuple[Decision, ...] = field(default=())

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "reason": self.reason,
            "request": self.request,
            "candidates": [c.to_json() for c in self.candidates],
            "trace": [asdict(d) for d in self.trace],
        }


# -- gates on the whole environment -------------------------------------------------


def _older(a: str, b: str) -> bool:
    return version_tuple(a) < version_tuple(b)


def check_environment(fp: Fingerprint) -> str | None:
    """Why no flash-attn wheel can work here at all, or ``None`` when one might."""
    if fp.compute_capability is None:
        return "no CUDA GPU detected; flash-attn needs one"
    if _older(fp.compute_capability, MIN_COMPUTE_CAPABILITY):
        gpu = f"GPU {fp.gpu_name}" if fp.gpu_name else "the GPU"
        return (
            f"{gpu} has compute capability {fp.compute_capability}; "
            f"FlashAttention-2 needs {MIN_COMPUTE_CAPABILITY} (Ampere) or newer"
        )
    if fp.torch_version is None:
        return "torch is not installed"
    if fp.torch_cuda is None:
        return f"torch {fp.torch_version} is not a CUDA build (torch.version.cuda is None)"
    if fp.cxx11abi is None:
        return "could not tell torch's C++ ABI (torch._C._GLIBCXX_USE_CXX11_ABI)"
    need = DRIVER_MIN_FOR_CUDA.get(fp.torch_cuda_major)
    if need and fp.driver and _older(fp.driver, need):
        return (
            f"driver {fp.driver} is older than {need}, the minimum for CUDA {fp.torch_cuda_major} "
            f"(torch {fp.torch_version} was built with CUDA {fp.torch_cuda})"
        )
    return None


# -- matching one wheel against the runtime ----------------------------------------


def mismatch(wheel: FlashAttnWheel, fp: Fingerprint) -> str | None:
    """The first field in which ``wheel`` cannot run here, naming both sides."""
    if wheel.platform != fp.platform:
        return f"built for {wheel.platform}, runtime is {fp.platform}"
    if wheel.python_tag != fp.python_tag:
        return f"built for {wheel.python_tag}, runtime is {fp.python_tag}"
    if wheel.cuda_major != fp.torch_cuda_major:
        return f"built for CUDA {wheel.cuda_major} (cu{wheel.cuda_label}), torch was built with CUDA {fp.torch_cuda}"
    if wheel.torch != fp.torch_major_minor:
        return f"built for torch {wheel.torch}, runtime has torch {fp.torch_version}"
    if wheel.cxx11abi != fp.cxx11abi:
        return f"built with cxx11abi {str(wheel.cxx11abi).upper()}, torch uses {str(fp.cxx11abi).upper()}"
    return None


def _release_gate(release: Release | None, wheel: FlashAttnWheel, fp: Fingerprint) -> str | None:
    need = release.min_glibc_of(wheel) if release else None
    if need is None or fp.glibc is None:
        return None
    if _older(fp.glibc, need):
        built = "was uploaded outside its build matrix" if wheel.filename in release.extra else "was built"
        return (f"release {release.version}'s {wheel.filename} {built} on a system with glibc {need}, "
                f"runtime has {fp.glibc} (wheels need glibc >= {need})")
    return None


def _upstream_miss(release: Release, wheel: FlashAttnWheel | None, fp: Fingerprint) -> str:
    """Why a release published no wheel for this runtime, in the matrix's own terms."""
    if release.no_wheels:
        return f"release {release.version} published no wheels: {release.no_wheels}"
    if wheel is None:
        built = ", ".join(f"cu{label}" for label in release.cuda_labels.values())
        return f"release {release.version} built no CUDA {fp.torch_cuda_major} wheels (built: {built})"
    if fp.torch_major_minor not in release.torch:
        return f"release {release.version} built for torch {', '.join(release.torch)}, runtime has torch {fp.torch_major_minor}"
    if fp.python not in release.python:
        return f"release {release.version} built for Python {', '.join(release.python)}, runtime has {fp.python}"
    if fp.platform not in release.platforms:
        return f"release {release.version} built for {', '.join(release.platforms)}, runtime is {fp.platform}"
    return f"release {release.version} excluded this combination from its build matrix"


def _unconfirmed(release: Release | None) -> str:
    return f" (UNCONFIRMED: {release.missing})" if release is not None and release.missing else ""


def _upstream_candidates(
    fp: Fingerprint, request: VersionRequest, upstream_url: str, releases: Sequence[Release]
) -> tuple[list[Candidate], list[Decision]]:
    candidates, trace = [], []
    for release in sorted(releases, key=lambda r: r.parsed_version, reverse=True):
        if not request.allows(release.parsed_version):
            continue
        label = release.cuda_labels.get(fp.torch_cuda_major)
        wheel = None
        if label is not None:
            wheel = FlashAttnWheel(release.version, label, fp.torch_major_minor, fp.cxx11abi, fp.python_tag, fp.platform)
        if wheel is None or not release.published(wheel):
            # Assets uploaded outside the matrix may still fit this runtime.
            wheel = next((w for w in release.extra_wheels() if mismatch(w, fp) is None), None) or wheel
        subject = wheel.filename if wheel else f"flash_attn {release.version}"
        if wheel is None or not (release.published(wheel) or wheel.filename in release.extra):
            trace.append(Decision(subject, False, _upstream_miss(release, wheel, fp), "upstream"))
            continue
        gate = _release_gate(release, wheel, fp)
        if gate:
            trace.append(Decision(subject, False, gate, "upstream"))
            continue
        url = f"{upstream_url.rstrip('/')}/v{release.version}/{wheel.filename}"
        candidates.append(Candidate(wheel.filename, url, "upstream", release.version))
        how = "uploaded this wheel outside its build matrix" if wheel.filename in release.extra else "built this wheel"
        trace.append(Decision(subject, True, f"release {release.version} {how}{_unconfirmed(release)}", "upstream"))
    return candidates, trace


def _offered_candidates(
    fp: Fingerprint, request: VersionRequest, offers: Iterable[Offer], releases: Sequence[Release]
) -> tuple[list[Candidate], list[Decision]]:
    candidates, trace = [], []
    for offer in offers:
        try:
            wheel = FlashAttnWheel.parse(offer.filename)
        except NotAFlashAttnWheel as exc:
            trace.append(Decision(offer.filename, False, exc.why, offer.source))
            continue
        if not request.allows(wheel.version):
            trace.append(Decision(offer.filename, False, f"version {wheel.version} not in request {request.text!r}", offer.source))
            continue
        why = mismatch(wheel, fp)
        release = next((r for r in releases if r.parsed_version == wheel.parsed_version), None)
        why = why or _release_gate(release, wheel, fp)
        if why:
            trace.append(Decision(offer.filename, False, why, offer.source))
            continue
        note = "matches this runtime" + ("" if release else " (release not in our table: glibc need unknown)")
        candidates.append(Candidate(offer.filename, offer.url, offer.source, wheel.version, offer.sha256, offer.rank))
        trace.append(Decision(offer.filename, True, note, offer.source))
    return candidates, trace


class _Newest:
    """Wraps a Version so that newer sorts first inside a sort key."""

    __slots__ = ("version",)

    def __init__(self, version: str):
        self.version = Version(version)

    def __lt__(self, other: _Newest) -> bool:
        return self.version > other.version

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Newest) and self.version == other.version


def _preference(candidate: Candidate) -> tuple:
    """The one preference order: newest release, then cache < mirrors (as configured) < upstream."""
    return (_Newest(candidate.version), candidate.rank)


def resolve(
    fp: Fingerprint,
    request: VersionRequest,
    *,
    offers: Iterable[Offer] = (),
    upstream_url: str | None,
    known_bad: Mapping[str, str] | None = None,
    releases: Sequence[Release] = RELEASES,
) -> Plan:
    """An ordered plan of wheels to try for ``fp``, best first, with the trace of every choice.

    ``offers`` are files the volume's cache and the mirrors hold; ``upstream_url`` is the
    releases download base (``None`` to leave upstream out); ``known_bad`` names files
    that already failed verification on this runtime, with the reason.
    """
    blocked = check_environment(fp)
    if blocked:
        return Plan("unsupported", blocked, request.text, (), (Decision("environment", False, blocked),))

    trace: list[Decision] = []
    candidates, offered_trace = _offered_candidates(fp, request, offers, releases)
    trace += offered_trace
    if upstream_url:
        upstream, upstream_trace = _upstream_candidates(fp, request, upstream_url, releases)
        candidates += upstream
        trace += upstream_trace
    else:
        trace.append(Decision("upstream", False, "upstream GitHub releases disabled (F5_WORKER_FLASH_ATTN_UPSTREAM is empty)"))

    usable = []
    for candidate in candidates:
        if known_bad and candidate.filename in known_bad:
            trace.append(Decision(candidate.filename, False, f"failed verification here before: {known_bad[candidate.filename]}", candidate.source))
        else:
            usable.append(candidate)
    usable.sort(key=_preference)

    if usable:
        return Plan("ok", None, request.text, tuple(usable), tuple(trace))
    rejected = [d for d in trace if not d.accepted]
    summary = rejected[0].reason if rejected else "no release matches the request"
    reason = (
        f"no flash-attn wheel for torch {fp.torch_version}, CUDA {fp.torch_cuda}, {fp.python_tag}, "
        f"cxx11abi {str(fp.cxx11abi).upper()}, {fp.platform} within request {request.text!r} "
        f"(newest considered: {summary})"
    )
    return Plan("unsupported", reason, request.text, (), tuple(trace))
