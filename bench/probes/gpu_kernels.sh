#!/usr/bin/env bash
# Kernel-level checks on the device machine: the position-convolution variants, then the sampler's speed.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh flash
timeout 120 python3 bench/probes/conv_probe.py --json "$OUT/conv-probe.json" 2>"$OUT/conv-probe.log" | grep -v '^ \|^{\|^}'
tail -2 "$OUT/conv-probe.log"
timeout 400 python3 bench/sampler_speed.py --batches "${BATCHES:-1,8,32}" --json "$OUT/sampler.json" 2>"$OUT/sampler.log" | grep -v '^ \|^{\|^}'
grep -v Warn "$OUT/sampler.log" | tail -3
