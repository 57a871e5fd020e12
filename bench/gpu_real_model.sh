#!/usr/bin/env bash
# The real-model path on the GPU: a random-weight F5TTS_v1_Base checkpoint and Vocos in their published
# formats, in a legacy directory; the worker migrates them into its hub cache (offline), activates the
# real flash-attn wheel from a local mirror, loads F5-TTS through its own loader in fp16, warms up, and
# serves one job. Run twice: cold volume, then warm. FA4=1: flash-attn-4 on the path as an image would install it;
# FA4=fetch: the worker fetches the pinned set itself from a local index (.fa4a-c carried; bench/probes/fa4_kit.sh).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
case "${FA4:-}" in 1) source bench/gpu_env.sh fa4 ;; fetch) source bench/gpu_env.sh fa4 fa4-fetch ;; *) source bench/gpu_env.sh ;; esac
if [ "${FA4:-}" = fetch ]; then
  (cd /tmp/fa4/index && exec python3 -m http.server 8766 --bind 127.0.0.1 >/dev/null 2>&1) &
  index_server=$!
  trap 'kill $index_server 2>/dev/null' EXIT  # (left running, it held the caller's pipe open until the call's limit)
  export F5_WORKER_FA4_INDEX=http://127.0.0.1:8766/ F5_WORKER_ALLOW_HTTP=true
fi
NAME=$FLASH_ATTN_WHEEL
mkdir -p /tmp/good && python3 .device/make_fa_wheel.py /tmp/good --name "$NAME" >/dev/null
python3 bench/make_random_checkpoint.py /tmp/legacy >/dev/null 2>&1 || echo "checkpoint failed"
du -sh /tmp/legacy
for kind in cold warm; do
  echo "== $kind"
  F5_WORKER_VOLUME=/tmp/vol-real F5_WORKER_FLASH_ATTN_UPSTREAM= F5_WORKER_FLASH_ATTN_MIRRORS=/tmp/good \
    F5_WORKER_MODEL=F5TTS_v1_Base F5_WORKER_LEGACY_MODEL_DIRS=/tmp/legacy F5_WORKER_OFFLINE=true \
    python3 bench/gpu_worker_check.py 2> "$OUT/real-$kind.log" | grep -v "^vocab\|^token\|^model\|^$" | tee "$OUT/real-$kind.json"
  grep -h '"phase"' "$OUT/real-$kind.log" | python3 -c "import sys,json;[print(' ', e['msg'], e.get('duration_ms','')) for e in map(json.loads,sys.stdin) if 'duration_ms' in e and e['msg'].endswith('done')]"
done
