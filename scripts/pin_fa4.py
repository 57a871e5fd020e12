#!/usr/bin/env python3
"""Writes src/f5_worker/fa4_pins.json: the FlashAttention-4 set the worker fetches onto the volume, each
package at one version, with the sha256 of each of its Linux wheels for the Pythons the image may run.

    python scripts/pin_fa4.py            (a maintainer, with network; then commit the file)

The versions are the ones the H200 ran (bench/probes/fa4_kit.sh, BENCHMARKS.md "FlashAttention-4 in the
worker"); einops, protobuf and cuda-pathfinder, which that kit took from the machine or as pre-releases, at
their latest releases. FA4's own dependency on nvidia-cutlass-dsl-libs-cu12 is left out on purpose: on
CUDA 13 the cu13 libraries are the ones it loads (pip installs the set with --no-deps). Hashes come from
PyPI's JSON simple API (PEP 691); pip checks every file against them (--require-hashes).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from packaging.utils import parse_wheel_filename

INDEX = "https://pypi.org/simple"
CUDA_MAJOR = "13"
PACKAGES = {  # name: version
    "flash-attn-4": "4.0.0b36",
    "nvidia-cutlass-dsl": "4.8.1",
    "nvidia-cutlass-dsl-libs-base": "4.8.1",
    "nvidia-cutlass-dsl-libs-core": "4.8.1",
    "nvidia-cutlass-dsl-libs-cu13": "4.8.1",
    "cuda-bindings": "13.5.0",
    "cuda-pathfinder": "1.9.1",
    "apache-tvm-ffi": "0.1.15.post2",
    "torch-c-dlpack-ext": "0.1.5",
    "quack-kernels": "0.6.5",
    "einops": "0.8.1",
    "protobuf": "7.36.2",
}
PYTHONS = {"py3", "cp311", "cp312", "cp313"}  # (3.10 needs backports.strenum as well: not pinned)
MACHINES = ("x86_64", "aarch64")
OUT = Path(__file__).resolve().parents[1] / "src" / "f5_worker" / "fa4_pins.json"


def linux_wheel(filename: str) -> bool:
    if not filename.endswith(".whl"):
        return False
    _, _, _, tags = parse_wheel_filename(filename)
    return any(t.interpreter in PYTHONS and (t.platform == "any" or (
        t.platform.startswith("manylinux") and t.platform.endswith(MACHINES))) for t in tags)


def files_of(name: str, version: str) -> dict[str, str]:
    request = urllib.request.Request(f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        listing = json.load(response)
    files = {f["filename"]: f["hashes"]["sha256"] for f in listing["files"]
             if linux_wheel(f["filename"]) and str(parse_wheel_filename(f["filename"])[1]) == version}
    if not files:
        raise SystemExit(f"{name}=={version}: no Linux wheel for {sorted(PYTHONS)} on {INDEX}")
    return dict(sorted(files.items()))


def main() -> int:
    pins = {"cuda_major": CUDA_MAJOR, "source": INDEX,
            "packages": {name: {"version": version, "files": files_of(name, version)}
                         for name, version in PACKAGES.items()}}
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(pins, indent=1) + "\n")
    tmp.replace(OUT)
    print(f"{OUT}: {sum(len(p['files']) for p in pins['packages'].values())} files of {len(PACKAGES)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
