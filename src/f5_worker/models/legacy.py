"""Model files left where older setups put them, found so they can be brought into the hub cache.

Each legacy directory is searched three ways, since one folder often mixes them:

1. as a hub cache (an old ``~/.cache/huggingface/hub``, or a ``cache_dir`` given to
   F5-TTS as ``hf_cache_dir``): its blob names are content hashes, checked on copy;
2. as cached_path's cache (default ``~/.cache/cached_path``): entries are named
   ``sha256(url)[.sha256(etag)]`` with a ``.json`` beside them whose ``resource`` (older
   versions: ``url``) is the URL. Recent cached_path hands ``hf://`` URLs to
   huggingface_hub (so those land in a hub cache, case 1); older entries and plain
   ``https://huggingface.co/ORG/REPO/resolve/REV/PATH`` URLs are recognised here;
3. as a plain directory of checkpoints: ``DIR/PATH``, ``DIR/REPO/PATH`` or
   ``DIR/ORG/REPO/PATH`` -- F5-TTS's own conventions are ``ckpts/F5TTS_v1_Base/model_1250000.safetensors``
   and ``checkpoints/vocos-mel-24khz/config.yaml``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .cache import locate
from .catalog import HubFile

__all__ = ["Candidate", "candidates", "parse_url"]


@dataclass(frozen=True)
class Candidate:
    path: Path
    origin: str
    blob_name: str | None = None  # the content hash the source claims, when it is a hub cache


def parse_url(url: str) -> tuple[str, str, str] | None:
    """``(repo_id, revision, filename)`` of an ``hf://`` or ``.../ORG/REPO/resolve/REV/PATH`` URL, else None."""
    if url.startswith("hf://"):
        parts = url[5:].split("/")
        if len(parts) < 3:
            return None
        repo, _, rev = parts[1].partition("@")
        return f"{parts[0]}/{repo}", rev or "main", "/".join(parts[2:])
    parsed = urllib.parse.urlsplit(url)
    parts = urllib.parse.unquote(parsed.path).strip("/").split("/")
    if parsed.scheme in ("http", "https") and len(parts) >= 5 and parts[2] == "resolve":
        return f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
    return None


def _matches(f: HubFile, found: tuple[str, str, str] | None) -> bool:
    return (
        found is not None
        and found[0].lower() == f.repo_id.lower()
        and found[2] == f.filename
        and found[1] == f.revision
    )


def _cached_path_entries(d: Path, f: HubFile) -> Iterator[Path]:
    try:
        metas = sorted(d.glob("*.json"))
    except OSError:
        return
    for meta in metas:
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        url = data.get("resource") or data.get("url") if isinstance(data, dict) else None
        body = meta.with_suffix("")
        if isinstance(url, str) and _matches(f, parse_url(url)) and body.is_file():
            yield body


def candidates(dirs: Iterable[Path], f: HubFile) -> Iterator[Candidate]:
    """Every copy of ``f`` in the legacy ``dirs``, in the order given."""
    org, repo = f.repo_id.split("/", 1)
    for d in dirs:
        if not d.is_dir():
            continue
        for entry in locate(d, f):
            yield Candidate(entry.blob, f"hub cache {d}", entry.blob_name)
        for body in _cached_path_entries(d, f):
            yield Candidate(body, f"cached_path cache {d}")
        for rel in (f.filename, f"{repo}/{f.filename}", f"{org}/{repo}/{f.filename}"):
            if (d / rel).is_file():
                yield Candidate(d / rel, f"directory {d}")
