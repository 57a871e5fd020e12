"""Installed size of a Python environment, per distribution and per image layer.

Without a Docker engine, the size of the worker image is computed from what it installs: install the
exact set for one CUDA/torch pair into a directory (``pip install --target DIR``, see docs/container.md
for the commands), then run

    python bench/image_size.py DIR --layer torch=REPORT.json --layer f5-tts=f5-tts --gzip --json

Each file is owned by the distribution whose ``*.dist-info/RECORD`` lists it (a file counted once, hard
links once); files no RECORD lists are reported as ``(unowned)`` (pip's ``bin/`` wrappers, caches).
A ``--layer NAME=...`` takes either a pip ``--report`` JSON (every distribution it would install) or a
comma-separated list of distribution names; distributions in no layer go to the ``--rest`` layer. With
``--gzip``, each layer's files are also written as a gzip'd tar (level 6, as ``docker push`` does) to a
counter, which approximates that layer's compressed size in a registry, i.e. what a host pulls.

Only the standard library is used, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Distribution", "scan", "layers_of", "gzip_size", "main"]

UNOWNED = "(unowned)"


def normalize(name: str) -> str:
    """PEP 503 normalised project name: ``Torch_Audio`` -> ``torch-audio``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Distribution:
    name: str  # normalised
    version: str
    top_level: tuple[str, ...]
    files: list[Path] = field(default_factory=list)
    bytes: int = 0


def _metadata(dist_info: Path) -> tuple[str, str]:
    name = version = ""
    with open(dist_info / "METADATA", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key == "Name":
                name = value.strip()
            elif key == "Version":
                version = value.strip()
    return normalize(name or dist_info.name.split("-")[0]), version


def _record(site: Path, dist_info: Path) -> Iterable[Path]:
    record = dist_info / "RECORD"
    if not record.is_file():
        return []
    with open(record, newline="", encoding="utf-8", errors="replace") as fh:
        return [Path(os.path.normpath(site / row[0])) for row in csv.reader(fh) if row]


def scan(site: Path) -> dict[str, Distribution]:
    """Every distribution under ``site`` with the bytes of the files it owns, plus ``(unowned)``."""
    site = site.resolve()
    owner: dict[Path, str] = {}
    dists: dict[str, Distribution] = {}
    for dist_info in sorted(site.glob("*.dist-info")):
        name, version = _metadata(dist_info)
        paths = list(_record(site, dist_info))
        tops = sorted({p.relative_to(site).parts[0] for p in paths
                       if p.is_relative_to(site) and not p.relative_to(site).parts[0].endswith(".dist-info")})
        dists[name] = Distribution(name, version, tuple(tops))
        for p in paths:
            owner.setdefault(p, name)
        owner.setdefault(dist_info, name)  # its own files, even those RECORD leaves out
    dists[UNOWNED] = Distribution(UNOWNED, "", ())
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(site):
        dirs.sort()
        for fname in sorted(files):
            path = Path(root) / fname
            st = path.lstat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            name = owner.get(path)
            if name is None:
                # files under a dist-info directory belong to it (INSTALLER, REQUESTED, direct_url.json)
                parent = next((q for q in path.parents if q.suffix == ".dist-info"), None)
                name = owner.get(parent, UNOWNED) if parent else UNOWNED
            dists[name].files.append(path)
            dists[name].bytes += st.st_size
    return dists


def _layer_members(spec: str) -> set[str]:
    if spec.endswith(".json") and Path(spec).is_file():
        report = json.loads(Path(spec).read_text())
        return {normalize(item["metadata"]["name"]) for item in report.get("install", [])}
    return {normalize(n) for n in spec.split(",") if n.strip()}


def layers_of(dists: Mapping[str, Distribution], specs: list[tuple[str, str]], rest: str) -> dict[str, list[str]]:
    """Layer name -> distributions, in the order given; a distribution goes to the first layer naming it."""
    out: dict[str, list[str]] = {name: [] for name, _ in specs}
    out.setdefault(rest, [])
    members = [(name, _layer_members(spec)) for name, spec in specs]
    for dist in dists:
        layer = next((name for name, m in members if dist in m), rest)
        out[layer].append(dist)
    return out


class _Counter(io.RawIOBase):
    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.n += len(b)
        return len(b)


def gzip_size(site: Path, files: Iterable[Path], level: int = 6) -> int:
    """Bytes of a gzip'd tar of ``files`` (paths stored relative to ``site``), never written to disk."""
    counter = _Counter()
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container

    class _Gz(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            counter.write(compressor.compress(b))
            return len(b)

    sink = _Gz()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(site)), recursive=False)
    counter.write(compressor.flush())
    return counter.n


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="a directory filled by pip install --target")
    parser.add_argument("--layer", action="append", default=[], metavar="NAME=REPORT.json|DIST,DIST",
                        help="a layer, in Dockerfile order; repeatable")
    parser.add_argument("--rest", default="deps", help="the layer for distributions no --layer names")
    parser.add_argument("--gzip", action="store_true", help="also compute each layer's gzip'd tar size")
    parser.add_argument("--top", type=int, default=25, help="distributions listed in the text output")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    specs = []
    for item in args.layer:
        name, sep, spec = item.partition("=")
        if not sep:
            parser.error(f"--layer {item!r} is not NAME=REPORT.json or NAME=DIST,DIST")
        specs.append((name, spec))
    site = args.site.resolve()
    dists = scan(site)
    layers = layers_of(dists, specs, args.rest)
    result = {
        "site": str(site),
        "total_bytes": sum(d.bytes for d in dists.values()),
        "distributions": sorted(
            ({"name": d.name, "version": d.version, "bytes": d.bytes, "files": len(d.files),
              "top_level": list(d.top_level)} for d in dists.values()),
            key=lambda r: -r["bytes"]),
        "layers": [],
    }
    for name, members in layers.items():
        files = [f for m in members for f in dists[m].files]
        entry = {"name": name, "bytes": sum(dists[m].bytes for m in members), "files": len(files),
                 "distributions": sorted(members)}
        if args.gzip:
            entry["gzip_bytes"] = gzip_size(site, files)
        result["layers"].append(entry)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"{site}: {_mb(result['total_bytes'])} installed")
    for layer in result["layers"]:
        gz = f", {_mb(layer['gzip_bytes'])} gzip'd" if "gzip_bytes" in layer else ""
        print(f"  layer {layer['name']}: {_mb(layer['bytes'])}{gz}, {len(layer['distributions'])} distributions")
    for d in result["distributions"][: args.top]:
        print(f"  {d['bytes'] / 1e6:10,.1f} MB  {d['name']} {d['version']}  ({', '.join(d['top_level'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
