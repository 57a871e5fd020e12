"""The Hugging Face hub cache on disk: find a file in it, publish one into it, move a bad one aside.

The layout is huggingface_hub's own (see ``hf_hub_download``'s docstring), so every
tool that reads the hub cache finds what we put there::

    <cache>/models--SWivid--F5-TTS/
        blobs/<sha256 for LFS files | git blob sha1 for others>
        refs/main                                   -> a commit hash (text)
        snapshots/<commit>/F5TTS_v1_Base/model_1250000.safetensors -> ../../../blobs/<sha256>

RunPod's cached models may name the repo folder in lower case
(``models--swivid--f5-tts``); ``locate`` finds those too. A file brought in from a
legacy place has no known commit: it goes into the snapshot of a fixed made-up commit
(``migrated_commit``), and ``refs/<revision>`` is pointed there only if no ref exists
yet. Once the hub is reached, ``hf_hub_download`` finds the blob by its ETag, links it
into the real commit's snapshot and moves the ref, without downloading it again.

Writes go to a unique ``*.incomplete`` name in the destination folder, are fsynced and
renamed into place; a symlink is made under a temp name and renamed over the pointer.
Several workers may publish the same blob at once: they write identical bytes under
the same name, and the last rename wins.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog import HubFile
from .integrity import CHUNK, digest_kind, new_hasher

from ..fsutil import writable  # noqa: E402  (re-exported: callers ask the cache)

__all__ = ["Entry", "repo_folder", "locate", "entry_at", "publish", "quarantine", "migrated_commit", "writable"]


@dataclass(frozen=True)
class Entry:
    pointer: Path  # the path under snapshots/ that loaders open
    blob: Path  # what it resolves to
    blob_name: str | None  # the ETag the cache names the blob by; None when the snapshot holds a plain file


def repo_folder(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def migrated_commit(repo_id: str, revision: str) -> str:
    """The made-up commit that files migrated from legacy places are filed under: fixed per repo and revision,
    so that every worker migrating at once writes the same paths."""
    return hashlib.sha1(f"f5-worker migrated {repo_id}@{revision}".encode()).hexdigest()


def _repo_dirs(cache: Path, repo_id: str) -> list[Path]:
    exact = cache / repo_folder(repo_id)
    found = [exact] if exact.is_dir() else []
    want = repo_folder(repo_id).lower()
    try:
        found += sorted(p for p in cache.iterdir() if p.name.lower() == want and p != exact and p.is_dir())
    except OSError:
        pass
    return found


def entry_at(pointer: Path) -> Entry:
    if pointer.is_symlink():
        return Entry(pointer, pointer.resolve(), Path(os.readlink(pointer)).name)
    return Entry(pointer, pointer, None)


def _snapshots(repo_dir: Path, f: HubFile) -> list[Path]:
    snaps = repo_dir / "snapshots"
    if f.pinned:
        return [snaps / f.revision]
    order: list[Path] = []
    try:
        order.append(snaps / (repo_dir / "refs" / f.revision).read_text().strip())
    except OSError:
        pass
    try:
        # Any other snapshot of the repo, newest first: RunPod's cache or an old one may lack refs/.
        others = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        others = []
    return order + [p for p in others if p not in order]


def locate(cache: Path, f: HubFile) -> Iterator[Entry]:
    """Every copy of ``f`` in the hub cache at ``cache``, best first (the ref's snapshot, then the others)."""
    for repo_dir in _repo_dirs(cache, f.repo_id):
        for snap in _snapshots(repo_dir, f):
            pointer = snap / f.filename
            if pointer.is_symlink() or pointer.exists():
                yield entry_at(pointer)


def _link(pointer: Path, blob: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.parent / f".{pointer.name}.{uuid.uuid4().hex[:12]}.incomplete"
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), tmp)
        os.replace(tmp, pointer)
    finally:
        if tmp.is_symlink():
            tmp.unlink()


def _create_if_absent(path: Path, text: str) -> None:
    """Write ``path`` whole, unless it exists: a ref written by the hub is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.incomplete"
    try:
        tmp.write_text(text)
        try:
            os.link(tmp, path)  # atomic create-if-absent
        except FileExistsError:
            pass
        except OSError:  # a volume without hard links: a small race, at worst a ref to our own snapshot
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish(cache: Path, f: HubFile, source: Path, expected: str | None = None) -> Entry:
    """Copy ``source`` into the cache as ``f``; the copy must hash to ``expected`` (a blob name) when given.

    Raises ValueError when it does not (the source is corrupt), OSError when the cache cannot be written.
    """
    kind = digest_kind(expected) or ("sha256" if f.lfs else "git-sha1")
    repo_dir = cache / repo_folder(f.repo_id)
    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    tmp = blobs / f".{uuid.uuid4().hex}.incomplete"
    try:
        h = new_hasher(kind, source.stat().st_size)
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if expected and digest != expected:
            raise ValueError(f"{source}: {kind} is {digest}, its cache names it {expected}")
        blob = blobs / digest
        os.replace(tmp, blob)
    finally:
        tmp.unlink(missing_ok=True)
    commit = f.revision if f.pinned else migrated_commit(f.repo_id, f.revision)
    pointer = repo_dir / "snapshots" / commit / f.filename
    _link(pointer, blob)
    if not f.pinned:
        _create_if_absent(repo_dir / "refs" / f.revision, commit)
    return Entry(pointer, blob, digest)


def quarantine(entry: Entry, into: Path) -> str:
    """Move a bad blob out of the cache (kept in ``into`` for a post-mortem) and drop its pointer."""
    try:
        into.mkdir(parents=True, exist_ok=True)
        dest = into / f"{entry.blob.name}.{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        try:
            os.replace(entry.blob, dest)
        except FileNotFoundError:
            dest = None  # another worker moved it first
        except OSError:  # another filesystem: no post-mortem copy, but never load it again
            entry.blob.unlink(missing_ok=True)
            dest = None
        if entry.pointer != entry.blob and entry.pointer.is_symlink():
            entry.pointer.unlink(missing_ok=True)
        return f"moved aside to {dest}" if dest else "removed"
    except OSError as exc:
        return f"could not move it aside ({type(exc).__name__}: {exc}); skipped"


