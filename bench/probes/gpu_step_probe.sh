#!/usr/bin/env bash
# RECORD, NO LONGER RUNS: gpu_step_probe.py ran against the engine of commit 2a1a2c9 (see its first lines).
# Runs bench/probes/gpu_step_probe.py on the device machine, with the real flash-attn wheel importable.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh flash
python3 bench/probes/gpu_step_probe.py --json "$OUT/step-probe.json" 2>&1 | grep -v Warning | tail -150
