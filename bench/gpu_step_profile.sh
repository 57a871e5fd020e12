#!/usr/bin/env bash
# Where a sampling step's GPU time goes, with PyTorch's kernels and with the engine's Triton kernels, and what
# torch.compile of the step would change (bench/step_profile.py; BENCHMARKS.md `## Throughput`). The Triton
# and inductor caches are fresh, so the compile times are a new volume's.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh flash
export TRITON_CACHE_DIR=/tmp/step-profile-triton TORCHINDUCTOR_CACHE_DIR=/tmp/step-profile-inductor
rm -rf "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR"
timeout 400 python3 bench/step_profile.py --batches 1,8 --kernels --compile ${COMPILE:-dynamic} \
  --json "$OUT/step-profile.json" 2>"$OUT/step-profile.log" | grep -v '^ \|^{\|^}'
