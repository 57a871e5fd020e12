#!/usr/bin/env bash
# Builds .fa4a/ and .fa4b/ (git-ignored): flash-attn-4 and its dependencies for the device machine (Python 3.12,
# CUDA 13), unpacked into one site directory, tarred, xz-compressed (~78 MB) and split in two, since one device
# call carries at most 64 MiB. Then, on one warm machine, three calls in a row (each within ~30 s of the last):
#   carry [".fa4a"]: true;   carry [".fa4b"]: true;   carry [".device"]: bash bench/gpu.sh probe-fa4-engine
# (probe-fa4 needs no .device: carry [".fa4b"] for its call). From the repo root: bash bench/probes/fa4_kit.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
pip download -q --pre --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$work/wheels" flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 \
  nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 cuda-bindings apache-tvm-ffi \
  torch-c-dlpack-ext quack-kernels einops protobuf
for wheel in "$work"/wheels/*.whl; do unzip -q -o "$wheel" -d "$work/site"; done
tar -C "$work" -cf - site | xz -6 -T0 > "$work/fa4-site.tar.xz"
rm -rf .fa4a .fa4b && mkdir -p .fa4a .fa4b
split -b 50m "$work/fa4-site.tar.xz" "$work/fa4-part."
mv "$work/fa4-part.aa" .fa4a/ && mv "$work/fa4-part.ab" .fa4b/
ls -l .fa4a .fa4b
