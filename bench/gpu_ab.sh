#!/usr/bin/env bash
# On the device machine: each tree of .device/ab (bench/ab_prepare.sh) and the working tree ("now"), one machine:
# AB_PARTS "throughput" (throughput.py --concurrency $CONCURRENCY, default 8) and/or "cold-start" (cold_start.py,
# warm volume, $RUNS starts). Results: $OUT/ab-PART-TREE.json.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh || exit 1
trees=$(ls .device/ab 2>/dev/null) now=$PWD
for part in ${AB_PARTS:-throughput}; do
  if [ "$part" = cold-start ]; then
    MIRROR=/tmp/fa-mirror LEGACY=/tmp/legacy-checkpoint
    mkdir -p "$MIRROR"
    python3 .device/make_fa_wheel.py "$MIRROR" --name "$FLASH_ATTN_WHEEL" >/dev/null
    [ -f "$LEGACY/.complete" ] || { python3 bench/make_random_checkpoint.py "$LEGACY" --model F5TTS_v1_Base >/tmp/ckpt.log 2>&1 \
      && touch "$LEGACY/.complete"; } || { tail -5 /tmp/ckpt.log; exit 1; }
  fi
  for tree in $trees now; do
    dir=$now; [ "$tree" = now ] || dir=$now/.device/ab/$tree
    echo "== $part $tree"
    case $part in
      throughput) (cd "$dir" && PYTHONPATH=$dir/src:/tmp/deps timeout 150 python3 bench/throughput.py \
                     --concurrency "${CONCURRENCY:-8}" --json "$OUT/ab-throughput-$tree.json" 2>"$OUT/ab-throughput-$tree.log" \
                     | grep -v '^ \|^{\|^}') ;;
      cold-start) F5_WORKER_MODEL=F5TTS_v1_Base F5_WORKER_LEGACY_MODEL_DIRS=/tmp/legacy-checkpoint F5_WORKER_OFFLINE=true \
                  F5_WORKER_FLASH_ATTN_UPSTREAM= F5_WORKER_FLASH_ATTN_MIRRORS=/tmp/fa-mirror PYTHONUNBUFFERED=1 \
                  PYTHONPATH=$dir/src:/tmp/deps timeout 200 python3 bench/cold_start.py --runs "${RUNS:-2}" --endpoint runsync \
                    --volume warm --work-dir "/tmp/ab-cold-start-$tree" --json "$OUT/ab-cold-start-$tree.json" 2>&1 \
                  | grep -E "warm #|ready_s|engine.warm_up|import.torch  |engine.kernels|ready / import" ;;
      *) echo "unknown AB_PARTS entry: $part"; exit 2 ;;
    esac
  done
done
