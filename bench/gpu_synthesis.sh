#!/usr/bin/env bash
# Synthesis benchmark on the device machine (no network): F5-TTS and its inference dependencies come as
# wheels in .device/wheels; flash-attn comes through the worker's own bootstrap (mirror on 127.0.0.1).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh ${FA4:+fa4}  # FA4=1: flash-attn-4 too (the worker's fa4 rows)
NAME=$FLASH_ATTN_WHEEL
python3 .device/make_fa_wheel.py /tmp/fa --name "$NAME" >/dev/null
(cd /tmp/fa && python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1) & SERVER=$!
sleep 1
F5_WORKER_VOLUME=/tmp/vol F5_WORKER_ALLOW_HTTP=true F5_WORKER_FLASH_ATTN_UPSTREAM= \
  F5_WORKER_FLASH_ATTN_MIRRORS=http://127.0.0.1:8765/ F5_WORKER_MODEL=tiny-random F5_WORKER_OFFLINE=true \
  python3 -m f5_worker init --json > "$OUT/init.json" 2> "$OUT/init.log"
kill $SERVER
SITE=$(python3 -c "import json; print(json.load(open('$OUT/init.json'))['flash_attn']['site'] or '')")
echo "flash-attn site: $SITE"
PYTHONPATH="$SITE:$PYTHONPATH" python3 bench/synthesis.py --runs 5 --json "$OUT/synthesis.json" 2> "$OUT/synthesis.log" | tail -80
tail -5 "$OUT/synthesis.log"
