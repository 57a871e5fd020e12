#!/usr/bin/env bash
# Real-time figures on the GPU: streamed first audio against the whole file (bench/stream_latency.py), and one
# request's speed at F5-TTS's fewer-step EPSS schedules (NFE 7, 16) against the default 32 (bench/throughput.py).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh || exit 1
echo "== streaming: first audio vs whole file"
timeout 200 python3 bench/stream_latency.py --json "$OUT/stream-latency.json" 2> "$OUT/stream-latency.log" \
  | grep -v '^  *\[' | head -14
for nfe in 7 16 32; do
  echo "== NFE $nfe"
  timeout 150 python3 bench/throughput.py --nfe $nfe --concurrency 1,8 --rounds 1 --json "$OUT/nfe-$nfe.json" \
    2> "$OUT/nfe-$nfe.log" | grep -v '^ \|^{\|^}'
done
