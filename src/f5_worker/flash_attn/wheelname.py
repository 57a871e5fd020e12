"""Upstream flash-attn wheel names, parsed into values and printed back unchanged.

Upstream's release assets are named by ``setup.py``'s ``get_wheel_url()``::

    flash_attn-{version}+cu{CUDA}torch{major.minor}cxx11abi{TRUE|FALSE}-{cpXY}-{cpXY}-{platform}.whl

The ``+cu..torch..cxx11abi..`` label is in the *file name only*: the wheel's own
metadata carries the plain version, so pip sees a name/metadata mismatch
(``install.normalized_filename`` deals with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from ..errors import NotAFlashAttnWheel

__all__ = ["FlashAttnWheel", "NotAFlashAttnWheel", "cuda_major_of_label"]

_LABEL = re.compile(r"^cu(?P<cuda>\d+)torch(?P<torch>\d+\.\d+)cxx11abi(?P<abi>true|false)$", re.IGNORECASE)


def cuda_major_of_label(label: str) -> int:
    """``"118"`` -> 11, ``"122"`` -> 12, ``"12"`` -> 12, ``"13"`` -> 13."""
    return int(label[:2]) if len(label) >= 3 else int(label)


@dataclass(frozen=True)
class FlashAttnWheel:
    version: str  # public version, as the wheel's metadata says it: "2.8.3.post2"
    cuda_label: str  # what follows "cu": "118", "122", "123", "11", "12", "13"
    torch: str  # "2.8"
    cxx11abi: bool
    python_tag: str  # "cp312"
    platform: str  # "linux_x86_64"

    @property
    def filename(self) -> str:
        abi = "TRUE" if self.cxx11abi else "FALSE"
        return (
            f"flash_attn-{self.version}+cu{self.cuda_label}torch{self.torch}cxx11abi{abi}"
            f"-{self.python_tag}-{self.python_tag}-{self.platform}.whl"
        )

    @property
    def cuda_major(self) -> int:
        return cuda_major_of_label(self.cuda_label)

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    def __str__(self) -> str:
        return self.filename

    @classmethod
    def parse(cls, filename: str) -> FlashAttnWheel:
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise NotAFlashAttnWheel(filename, str(exc)) from None
        if name != "flash-attn":
            raise NotAFlashAttnWheel(filename, f"project is {name!r}")
        if version.local is None:
            raise NotAFlashAttnWheel(
                filename, "no '+cuXXtorchX.Ycxx11abiX' label, so nothing says which CUDA/torch it was built for"
            )
        match = _LABEL.match(version.local)
        if match is None:
            raise NotAFlashAttnWheel(filename, f"label {version.local!r} is not cuXXtorchX.Ycxx11abiTRUE|FALSE")
        (tag,) = tags if len(tags) == 1 else (None,)
        if tag is None or tag.interpreter != tag.abi:
            raise NotAFlashAttnWheel(filename, "expected one tag of the form cpXY-cpXY-platform")
        return cls(
            version=version.public,
            cuda_label=match["cuda"],
            torch=match["torch"],
            cxx11abi=match["abi"].lower() == "true",
            python_tag=tag.interpreter,
            platform=tag.platform,
        )
