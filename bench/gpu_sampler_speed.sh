#!/usr/bin/env bash
# bench/sampler_speed.py on the device machine: plain, with cuDNN autotuning, with torch.compile.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh
python3 .device/make_fa_wheel.py /tmp/fa --name "$FLASH_ATTN_WHEEL" >/dev/null
python3 -m pip install -q --no-deps --no-index --target /tmp/fa-site /tmp/fa/"$FLASH_ATTN_WHEEL" 2>/dev/null
export PYTHONPATH="$PYTHONPATH:/tmp/fa-site"
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
