#!/usr/bin/env bash
# The load test on the GPU with the real model size: `f5-worker serve` loads a random-weight F5TTS_v1_Base
# (migrated from a legacy directory, offline) with the real flash-attn wheel from a local mirror, then
# bench/load.py drives it over 127.0.0.1.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh
NAME=$FLASH_ATTN_WHEEL
mkdir -p /tmp/good && python3 .device/make_fa_wheel.py /tmp/good --name "$NAME" >/dev/null
python3 bench/make_random_checkpoint.py /tmp/legacy >/dev/null 2>&1 || echo "checkpoint failed"
F5_WORKER_VOLUME=/tmp/vol F5_WORKER_FLASH_ATTN_UPSTREAM= F5_WORKER_FLASH_ATTN_MIRRORS=/tmp/good \
  F5_WORKER_MODEL=F5TTS_v1_Base F5_WORKER_LEGACY_MODEL_DIRS=/tmp/legacy F5_WORKER_OFFLINE=true \
  python3 -m f5_worker serve --port 8000 > "$OUT/serve.log" 2>&1 &
PID=$!
for _ in $(seq 240); do
  curl -sf http://127.0.0.1:8000/health > "$OUT/health.json" && break
  kill -0 $PID 2>/dev/null || { echo "serve exited:"; tail -20 "$OUT/serve.log"; exit 1; }
  sleep 1
done
head -c 600 "$OUT/health.json"; echo
# Closed loop at 64 clients, then an open loop above capacity (backpressure: 429 with Retry-After, none hangs).
python3 bench/load.py --url http://127.0.0.1:8000 --pid $PID --clients ${CLIENTS:-64} --seconds ${SECONDS_EACH:-40} \
  --nfe-step 32 --out "$OUT/load-h200-c${CLIENTS:-64}.json" 2> "$OUT/load-closed.log" | tail -32
python3 bench/load.py --url http://127.0.0.1:8000 --pid $PID --rate ${RATE:-60} --seconds ${SECONDS_EACH:-40} \
  --nfe-step 32 --request-timeout 120 --out "$OUT/load-h200-open.json" 2> "$OUT/load-open.log" | tail -32
kill $PID; wait $PID 2>/dev/null || true  # it exits 143 on the SIGTERM sent here
