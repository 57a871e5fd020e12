#!/usr/bin/env bash
# Runs bench/gpu_step_probe.py on the device machine with and without flash-attn available.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh
python3 .device/make_fa_wheel.py /tmp/fa --name "$FLASH_ATTN_WHEEL" >/dev/null
python3 -m pip install -q --no-deps --no-index --target /tmp/fa-site /tmp/fa/"$FLASH_ATTN_WHEEL" 2>/dev/null
PYTHONPATH="$PYTHONPATH:/tmp/fa-site" python3 bench/gpu_step_probe.py --json "$OUT/step-probe.json" 2>&1 | grep -v Warning | tail -150
