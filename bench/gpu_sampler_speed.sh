#!/usr/bin/env bash
# bench/sampler_speed.py on the device machine: plain, with cuDNN autotuning, with torch.compile.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh flash
for variant in "${@:-plain}"; do
  case $variant in
    plain) flags=() ;;
    cudnn) flags=(--cudnn-benchmark --batches 1,16,64) ;;
    compile) flags=(--compile --cudnn-benchmark --batches 1,16,64) ;;
  esac
  echo "== $variant"
  python3 bench/sampler_speed.py "${flags[@]}" --json "$OUT/sampler-$variant.json" 2>"$OUT/sampler-$variant.log" | grep -v '^ \|^{\|^}'
  tail -3 "$OUT/sampler-$variant.log"
done
