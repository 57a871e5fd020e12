#!/usr/bin/env bash
# Two starts of `f5-worker serve` on one volume: the first measures its batching (engine.tune), the second
# reuses the record kept on the volume. Prints each start's tuning log line and its time to /health.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh serve
mkdir -p /tmp/good && python3 .device/make_fa_wheel.py /tmp/good --name "$FLASH_ATTN_WHEEL" >/dev/null
python3 bench/make_random_checkpoint.py /tmp/legacy >/dev/null 2>&1 || echo "checkpoint failed"
for start in cold warm; do
  began=$(date +%s.%N)
  F5_WORKER_VOLUME=/tmp/vol F5_WORKER_FLASH_ATTN_UPSTREAM= F5_WORKER_FLASH_ATTN_MIRRORS=/tmp/good \
    F5_WORKER_MODEL=F5TTS_v1_Base F5_WORKER_LEGACY_MODEL_DIRS=/tmp/legacy F5_WORKER_OFFLINE=true \
    python3 -m f5_worker serve --port 8000 > "$OUT/serve-$start.log" 2>&1 &
  PID=$!
  for _ in $(seq 240); do
    curl -sf http://127.0.0.1:8000/health > "$OUT/health-$start.json" && break
    kill -0 $PID 2>/dev/null || { echo "serve exited:"; tail -20 "$OUT/serve-$start.log"; break; }
    sleep 0.5
  done
  echo "$start: ready after $(python3 -c "import time; print(round(time.time() - $began, 1))") s"
  grep '"engine tuned"' "$OUT/serve-$start.log" | cut -c1-500
  kill $PID; wait $PID 2>/dev/null
done
ls /tmp/vol/f5-worker/cache/tuning/
exit 0
