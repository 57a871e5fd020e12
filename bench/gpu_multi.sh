#!/usr/bin/env bash
# Issue 17: audio per second with one GPU, then with every GPU of the machine (one engine each), at the best
# concurrency; the setup of ## Throughput (SDPA, the best backend there). Needs 2 or more GPUs (nvidia-h200-x2).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
timeout 480 python3 bench/multi_gpu.py ${PER_GPU:+--per-gpu $PER_GPU} --json "$OUT/multi-gpu.json" \
  2>"$OUT/multi-gpu.log" | grep -v '^ \|^{\|^}'
python3 -c "import json; r = json.load(open('$OUT/multi-gpu.json')); print('multi_gpu_scaling:', r['multi_gpu_scaling'], \
  '(', r['best_all_audio_s_per_s'], 'vs', r['best_one_audio_s_per_s'], 'audio s/s,', r['gpus'], 'GPUs)')"
