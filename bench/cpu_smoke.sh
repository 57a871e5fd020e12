#!/usr/bin/env bash
# Every engine benchmark once on the CPU, tiny-random, few steps: catches a script the engine has moved away
# from, without a GPU. Not timings to read. About 8 minutes on 2 cores (the rounding probe runs its kernels in
# Triton's interpreter: ~3.5 of them); from the repo root:
#
#   bash bench/cpu_smoke.sh [NAME...]      (no argument: all; PYTHON defaults to .venv/bin/python)
#
# Logs and JSON in /tmp/bench-smoke/. Exit status: the number of scripts that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DIR=/tmp/bench-smoke; mkdir -p "$DIR"
declare -A SMOKE=(
  [synthesis]="bench/synthesis.py --model tiny-random --device cpu --nfe 4 --runs 1 --warm-ups 1 --mixed 4 --json $DIR/synthesis.json"
  [sampler_speed]="bench/sampler_speed.py --model tiny-random --device cpu --nfe 2 --batches 1,2 --runs 1 --mixed 4 --json $DIR/sampler_speed.json"
  [new_lengths]="bench/new_lengths.py --model tiny-random --device cpu --nfe 2 --json $DIR/new_lengths.json"
  [new_lengths_prewarmed]="bench/new_lengths.py --model tiny-random --device cpu --nfe 2 --prewarmed"
  [throughput]="bench/throughput.py --model tiny-random --device cpu --nfe 4 --concurrency 1,2 --rounds 1 --json $DIR/throughput.json"
  [multi_gpu]="bench/multi_gpu.py --model tiny-random --device cpu --gpus 2 --nfe 4 --per-gpu 1,2 --rounds 1 --json $DIR/multi_gpu.json"
  [step_profile]="bench/step_profile.py --model tiny-random --device cpu --batches 1 --json $DIR/step_profile.json"
  [conv_probe]="bench/probes/conv_probe.py --device cpu --dim 64 --seqs 2 --runs 1 --json $DIR/conv_probe.json"
  [rss_probe]="bench/probes/gpu_rss_probe.py --model tiny-random --device cpu --jobs 20 --nfe 4"
  [request_timeline]="bench/probes/request_timeline.py --model tiny-random --device cpu --json $DIR/request_timeline.json"
  [rounding]="bench/probes/rounding.py --model tiny-random --device cpu --seeds 1 --frames 48 --json $DIR/rounding.json"
  [prelude_graphs]="bench/probes/prelude_graphs.py --model tiny-random --device cpu --json $DIR/prelude_graphs.json"
  [frame_lengths]="bench/probes/frame_lengths.py --model tiny-random --device cpu --json $DIR/frame_lengths.json"
  [capture_context]="bench/probes/capture_context.py --model tiny-random --device cpu --json $DIR/capture_context.json"
  [batch_timeline]="bench/probes/batch_timeline.py --model tiny-random --device cpu --clients 2 --rounds 1 --json $DIR/batch_timeline.json"
  [turnaround]="bench/probes/turnaround.py --clients 4 --batch-s 0.2 --rounds 1 --json $DIR/turnaround.json"
  [qkv_gemm]="bench/probes/qkv_rotation_gemm.py --smoke"
  [worker_check]="bench/gpu_worker_check.py"
)
ORDER=(synthesis sampler_speed new_lengths new_lengths_prewarmed throughput multi_gpu step_profile conv_probe rss_probe
       request_timeline rounding prelude_graphs frame_lengths capture_context batch_timeline turnaround qkv_gemm
       worker_check)
failed=0
for name in "${@:-${ORDER[@]}}"; do
  [ -n "${SMOKE[$name]:-}" ] || { echo "unknown: $name (one of ${ORDER[*]})"; exit 2; }
  began=$SECONDS
  # shellcheck disable=SC2086  # the command line is a list of words
  if F5_WORKER_VOLUME=$DIR/volume F5_WORKER_FLASH_ATTN=off F5_WORKER_MODEL=tiny-random F5_WORKER_OFFLINE=true \
       timeout 600 $PY ${SMOKE[$name]} >"$DIR/$name.log" 2>&1; then
    echo "ok    $name ($((SECONDS - began)) s)"
  else
    echo "FAIL  $name ($((SECONDS - began)) s): $DIR/$name.log"; tail -5 "$DIR/$name.log" | sed 's/^/      /'
    failed=$((failed + 1))
  fi
done
exit $failed
