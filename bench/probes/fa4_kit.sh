#!/usr/bin/env bash
# Builds .fa4a/, .fa4b/ and .fa4c/ (git-ignored): the worker's pinned FlashAttention-4 set (src/f5_worker/fa4_pins.json)
# for the device machine (Python 3.12, x86_64), downloaded by pip with every file checked against its pin, tarred
# (~107 MB; wheels do not compress further) and split in three, since one device call carries at most 64 MiB.
# Then, on one warm machine, four calls in a row (each within ~30 s of the last):
#   carry [".fa4a"]: true;   carry [".fa4b"]: true;   carry [".fa4c"]: true;   carry [".device"]: bash bench/gpu.sh SUITE
# where SUITE is one of probe-fa4-engine, synthesis-fa4, real-model-fa4 (FA4 on the path, as an image would
# install it) or real-model-fa4-fetch (the worker fetches the set from a local index, as from PyPI). probe-fa4
# needs no .device: carry [".fa4c"] last with it. From the repo root: bash bench/probes/fa4_kit.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
PYTHONPATH=src "${PYTHON:-python3}" - "$work/requirements.txt" <<'PY'  # (PYTHON: one with the project's dependencies)
import sys
from packaging.tags import Tag
from f5_worker import fa4_fetch
from f5_worker.runtime.fingerprint import Fingerprint

h200 = Fingerprint(torch_version="2.11.0+cu130", torch_cuda="13.0", cxx11abi=True, python="3.12",
                   platform="linux_x86_64", glibc="2.39", compute_capability="9.0")
tags = [Tag("cp312", abi, f"manylinux_2_{n}_x86_64") for abi in ("cp312", "abi3", "none") for n in (28, 24, 17)]
planned = fa4_fetch.plan(h200, fa4_fetch.Pins.load(), tags + [Tag("py3", "none", "any")])
open(sys.argv[1], "w").write(planned.requirements)
PY
PIP_CONFIG_FILE=/dev/null pip download -q --no-deps --require-hashes --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform any --index-url https://pypi.org/simple \
  -d "$work/wheels" -r "$work/requirements.txt"
tar -C "$work" -cf "$work/fa4-wheels.tar" wheels
rm -rf .fa4a .fa4b .fa4c && mkdir -p .fa4a .fa4b .fa4c
split -b 40m "$work/fa4-wheels.tar" "$work/fa4-part."
mv "$work/fa4-part.aa" .fa4a/ && mv "$work/fa4-part.ab" .fa4b/ && mv "$work/fa4-part.ac" .fa4c/
ls -l .fa4a .fa4b .fa4c
