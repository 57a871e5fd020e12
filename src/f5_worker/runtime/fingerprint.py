"""What a binary wheel has to match: the runtime's fingerprint, as a plain value.

The fingerprint is data only. ``probe.detect()`` fills one in from the live
process; tests and ``f5-worker flash-attn resolve --env FILE.json`` build one from
JSON. Missing facts (no GPU, no torch, no driver) are ``None``, never an error.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields

from packaging.version import InvalidVersion, Version

from ..errors import ConfigError

__all__ = ["Fingerprint"]

_DOTTED = re.compile(r"^\d+(\.\d+)*$")


def _dotted(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    if not _DOTTED.match(value):
        raise ConfigError(f"fingerprint field {name}={value!r} is not a dotted version such as '12.8'")
    return value


def version_tuple(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.split("."))


@dataclass(frozen=True)
class Fingerprint:
    """The facts about this runtime that decide which flash-attn wheel can work.

    ``torch_cuda`` is the CUDA version torch was *built with* (``torch.version.cuda``):
    a flash-attn wheel links against torch's CUDA libraries, so this is what its
    ``cuXX`` label must match, not nvcc and not the driver. The driver only has to
    be new enough for that CUDA (``driver``/``driver_cuda``).
    """

    torch_version: str | None  # "2.8.0+cu128"
    torch_cuda: str | None  # "12.8"; None for CPU or ROCm builds of torch
    cxx11abi: bool | None  # torch._C._GLIBCXX_USE_CXX11_ABI
    python: str  # "3.12"
    platform: str  # "linux_x86_64"
    glibc: str | None  # "2.35"; None off glibc
    compute_capability: str | None = None  # "9.0"; None without a CUDA GPU
    driver: str | None = None  # "570.124.06"
    gpu_name: str | None = None
    driver_cuda: str | None = None  # newest CUDA the driver supports, "12.8"

    def __post_init__(self) -> None:
        for name in ("torch_cuda", "glibc", "compute_capability", "driver", "driver_cuda"):
            object.__setattr__(self, name, _dotted(getattr(self, name), name))
        if not re.match(r"^3\.\d+$", self.python):
            raise ConfigError(f"fingerprint field python={self.python!r} is not of the form '3.12'")
        if self.torch_version is not None:
            try:
                Version(self.torch_version)
            except InvalidVersion:
                raise ConfigError(f"fingerprint field torch_version={self.torch_version!r} is not a version") from None

    # -- derived facts ---------------------------------------------------------------

    @property
    def python_tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def torch_major_minor(self) -> str | None:
        if self.torch_version is None:
            return None
        release = Version(self.torch_version).release
        return f"{release[0]}.{release[1]}"

    @property
    def torch_cuda_major(self) -> int | None:
        return None if self.torch_cuda is None else version_tuple(self.torch_cuda)[0]

    def runtime_key(self) -> str:
        """Directory name for installs made for this runtime: readable, and unique per fingerprint.

        Everything a compiled extension can depend on is in the key, the GPU too, because
        an install is only published after it ran on this GPU's architecture. The C++ ABI
        is left out on purpose: it is fixed by the torch build (named by its version), and
        leaving it out lets a warm start find its install without importing torch.
        """
        relevant = {
            k: getattr(self, k)
            for k in ("torch_version", "torch_cuda", "python", "platform", "glibc", "compute_capability")
        }
        digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:10]
        torch = (self.torch_version or "notorch").replace("+", "-")
        sm = "sm" + self.compute_capability.replace(".", "") if self.compute_capability else "nogpu"
        return f"torch{torch}-{self.python_tag}-{self.platform}-{sm}-{digest}"

    # -- serialisation ---------------------------------------------------------------

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Fingerprint:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown fingerprint field(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        missing = {"python", "platform"} - set(data)
        if missing:
            raise ConfigError(f"fingerprint is missing required field(s): {', '.join(sorted(missing))}")
        defaults = {"torch_version": None, "torch_cuda": None, "cxx11abi": None, "glibc": None}
        try:
            return cls(**{**defaults, **data})
        except TypeError as exc:
            raise ConfigError(f"fingerprint JSON is malformed: {exc}") from None
