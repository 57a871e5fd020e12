#!/usr/bin/env bash
# The sampler's numerics and speed, then the engine's throughput curve with SDPA and with flash attention (the
# engine's Triton kernels on, as serving runs), and (part pytorch) with SDPA and PyTorch's kernels only.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh flash
quiet() { grep -v '^ \|^{\|^}'; }
for part in ${PARTS:-sampler sdpa flash}; do
  echo "== $part"
  case $part in
    sampler) timeout 240 python3 bench/sampler_speed.py --kernels --batches 1,8,32 --json "$OUT/sampler.json" 2>"$OUT/sampler.log" | quiet ;;
    sdpa) timeout 300 python3 bench/throughput.py ${CONCURRENCY:+--concurrency $CONCURRENCY} ${MAX_BATCH:+--max-batch $MAX_BATCH} --json "$OUT/throughput-sdpa.json" 2>"$OUT/throughput-sdpa.log" | quiet ;;
    flash) timeout 240 python3 bench/throughput.py --single-backend flash_attn --batch-backend flash_attn \
             --json "$OUT/throughput-flash.json" 2>"$OUT/throughput-flash.log" | quiet ;;
    pytorch) timeout 240 python3 bench/throughput.py --kernels pytorch ${CONCURRENCY:+--concurrency $CONCURRENCY} \
               --json "$OUT/throughput-pytorch.json" 2>"$OUT/throughput-pytorch.log" | quiet ;;
    mixed) timeout 240 python3 bench/throughput.py --lengths mixed --batch-backend flash_attn \
             --json "$OUT/throughput-mixed.json" 2>"$OUT/throughput-mixed.log" | quiet ;;
  esac
done
