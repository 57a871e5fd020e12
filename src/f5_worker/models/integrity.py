"""Is a model file whole? Content hashes where the cache names them, format checks always.

The hub cache names each blob by its ETag: the sha256 of the content for LFS files
(64 hex digits), the git blob id ``sha1("blob <size>\\0" + content)`` for the others
(40 hex digits). Both are checked. A safetensors file must also have a header that
parses and that accounts for every byte after it (a truncated file fails here even
without a hash); a zip-format torch file (``.bin``/``.pt`` since torch 1.6) must have a
readable central directory, which sits at its very end.

Hashing a 1.3 GB checkpoint on a network volume costs seconds of cold start, so a
successful hash leaves a *stamp* (size and mtime of the blob) and a later check of
the same, unchanged blob trusts it. Blobs are only ever replaced by rename, which
changes the mtime, so a rewritten blob is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import write_json_atomic

__all__ = ["Check", "digest_kind", "file_digest", "check_format", "verify"]

CHUNK = 8 * 1024 * 1024
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Check:
    ok: bool
    how: str  # sha256 | git-sha1 | stamp | format
    reason: str = ""


def digest_kind(blob_name: str | None) -> str | None:
    """Which hash a hub cache blob name is: ``sha256`` (LFS), ``git-sha1`` (regular file) or None."""
    if blob_name and _SHA256.match(blob_name):
        return "sha256"
    if blob_name and _SHA1.match(blob_name):
        return "git-sha1"
    return None


def new_hasher(kind: str, size: int):
    if kind == "sha256":
        return hashlib.sha256()
    h = hashlib.sha1()
    h.update(b"blob %d\0" % size)
    return h


def file_digest(path: Path, kind: str) -> str:
    size = path.stat().st_size
    h = new_hasher(kind, size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _safetensors(path: Path, size: int) -> str | None:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes: too short for a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            return f"header length {n} does not fit in {size} bytes"
        try:
            header = json.loads(f.read(n))
        except ValueError as exc:
            return f"header is not JSON ({exc})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name!r} has no valid data_offsets"
        end = max(end, offsets[1])
    data = size - 8 - n
    if end != data:
        return f"truncated or padded: the header accounts for {end} bytes of tensor data, the file has {data}"
    return None


def check_format(path: Path, filename: str) -> str | None:
    """Why ``path`` is not a usable ``filename``, or None."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        suffix = Path(filename).suffix
        if suffix == ".safetensors":
            return _safetensors(path, size)
        if suffix in (".bin", ".pt", ".pth", ".ckpt"):
            with open(path, "rb") as f:
                zipped = f.read(4) == b"PK\x03\x04"
            if zipped:
                with zipfile.ZipFile(path) as z:
                    z.namelist()
            return None  # a pre-1.6 pickle has no structure to check without unpickling it
        if suffix in (".txt", ".yaml", ".yml", ".json"):
            path.read_bytes().decode("utf-8")
        return None
    except (OSError, zipfile.BadZipFile) as exc:
        return f"{type(exc).__name__}: {exc}"
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def verify(path: Path, filename: str, blob_name: str | None = None, stamps: Path | None = None) -> Check:
    """Check the file at ``path`` (a blob named ``blob_name`` when it is in a hub cache) before it is loaded."""
    try:
        if not path.is_file():
            return Check(False, "format", "missing (dangling link or not a file)")
        kind = digest_kind(blob_name)
        stamp_file = stamps / blob_name if stamps and kind else None
        if stamp_file is not None:
            try:
                if json.loads(stamp_file.read_text()) == _stamp(path):
                    return Check(True, "stamp")
            except (OSError, ValueError):
                pass
        why = check_format(path, filename)
        if why:
            return Check(False, "format", why)
        if kind is None:
            return Check(True, "format")
        actual = file_digest(path, kind)
        if actual != blob_name:
            return Check(False, kind, f"{kind} is {actual}, the cache names it {blob_name}")
        if stamp_file is not None:
            try:
                write_json_atomic(stamp_file, _stamp(path))
            except OSError:
                pass  # a read-only volume: hash again next time
        return Check(True, kind)
    except OSError as exc:
        return Check(False, "format", f"{type(exc).__name__}: {exc}")
