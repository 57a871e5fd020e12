#!/usr/bin/env bash
# bench/new_lengths.py on the device machine: the cost of a new length per attention path.
# ARGS passes flags through: ARGS=--prewarmed (the engine's background work first), ARGS=--split-only.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh flash
# shellcheck disable=SC2086  # ARGS is a list of flags
timeout 500 python3 bench/new_lengths.py ${ARGS:-} --json "$OUT/new-lengths.json" 2>"$OUT/new-lengths.log" | grep -v '^ \|^{\|^}'
grep -v Warn "$OUT/new-lengths.log" | tail -3
