#!/usr/bin/env bash
# The whole server's cold start on the GPU machine (bench/cold_start.py) at the real model size: a random-weight
# F5TTS_v1_Base checkpoint and Vocos in F5-TTS's published layout (bench/make_random_checkpoint.py) in a legacy
# directory that the worker migrates from, the real flash-attn wheel in a local mirror directory, offline.
# `f5-worker serve` is started RUNS times on a new volume each and RUNS times on one warm volume; results in
# $OUT/cold-start.json, the servers' logs in $OUT/cold-start-logs.tar.gz. Env: RUNS (3), ENDPOINT (runsync).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh || exit 1
RUNS=${RUNS:-3}
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
MIRROR=/tmp/fa-mirror LEGACY=/tmp/legacy-checkpoint
mkdir -p "$MIRROR"
[ -f "$MIRROR/$FLASH_ATTN_WHEEL" ] || python3 .device/make_fa_wheel.py "$MIRROR" --name "$FLASH_ATTN_WHEEL" >/dev/null \
  || { echo "making the flash-attn wheel failed"; exit 1; }
if [ ! -f "$LEGACY/.complete" ]; then
  rm -rf "$LEGACY"
  python3 bench/make_random_checkpoint.py "$LEGACY" --model F5TTS_v1_Base > "$OUT/checkpoint.log" 2>&1 \
    || { echo "make_random_checkpoint.py failed:"; tail -20 "$OUT/checkpoint.log"; exit 1; }
  touch "$LEGACY/.complete"
fi
echo "checkpoint: $(du -sh "$LEGACY" | cut -f1) in $LEGACY; flash-attn mirror: $MIRROR"
export F5_WORKER_MODEL=F5TTS_v1_Base F5_WORKER_LEGACY_MODEL_DIRS="$LEGACY" F5_WORKER_OFFLINE=true \
  F5_WORKER_FLASH_ATTN_UPSTREAM= F5_WORKER_FLASH_ATTN_MIRRORS="$MIRROR" PYTHONUNBUFFERED=1
rm -rf /tmp/cold-start
python3 bench/cold_start.py --runs "$RUNS" --endpoint "${ENDPOINT:-runsync}" --volume new --volume warm \
  --work-dir /tmp/cold-start --json "$OUT/cold-start.json"
rc=$?
tar -czf "$OUT/cold-start-logs.tar.gz" -C /tmp/cold-start logs 2>/dev/null
exit $rc
