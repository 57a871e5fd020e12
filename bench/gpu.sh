#!/usr/bin/env bash
# One entry point for the GPU suites. On the device machine, from the repo root, with .device carried
# (build it here first: python3 bench/device_kit.py):
#
#   bash bench/gpu.sh SUITE [SUITE...]      run suites in order (no argument: list them)
#
# Each suite runs its script with OUT=/tmp/gpu-out/SUITE. At the end the JSON files the suites wrote are copied
# to $OUT as SUITE--NAME.json (the device tool brings back 8 files at most: 7 JSON files, then the rest only in
# the archive), and everything, logs included, goes to $OUT/gpu-out.tar.gz. Exit status: the number of suites
# that failed. bench/README.md maps each suite to its BENCHMARKS.md section and bench/results/ files.
set -uo pipefail
cd "$(dirname "$0")/.."

SUITES=(
  "kit|bench/kit_check.py after gpu_env.sh: the kit installs, its requirements are met, the imports work"
  "cold-start|bench/gpu_cold_start.sh: f5-worker serve from exec to ready and first audio, new and warm volumes (RUNS=3)"
  "bootstrap|bench/gpu_run.sh: the flash-attn bootstrap with the real wheel: resolve, cold/warm init, broken wheel, startup.py"
  "worker-check|bench/gpu_worker_check.sh: the whole worker (tiny-random) with a good and a broken flash-attn wheel"
  "real-model|bench/gpu_real_model.sh: random-weight F5TTS_v1_Base migrated from a legacy dir, loaded, one job; cold, warm"
  "real-model-fa4|the same with flash-attn-4 on the path: the worker's background FA4 check and switch (carry .fa4a-c, then .device)"
  "real-model-fa4-fetch|the same, the worker fetching the pinned FA4 set from a local index, cold then warm (carry .fa4a-c, then .device)"
  "tune-reuse|bench/gpu_tune_reuse.sh: two serve starts on one volume, the second reusing the batch tuning"
  "step-profile|bench/gpu_step_profile.sh: a sampling step's GPU time by kind of kernel, PyTorch's vs Triton kernels; torch.compile"
  "step-profile-fa4|bench/step_profile.py --kernels --fa4 at 1420 frames, batch \$STEP_BATCHES (1,8,16): the step as the worker runs it on the H200, by kind of kernel; the largest batch's step replayed back to back for \$SUSTAINED s (20) with the clock; TUNABLEOP=1: then with TunableOp's matmul algorithms (carry .fa4a-c, then .device)"
  "throughput|bench/gpu_throughput.sh (\$PARTS: sampler sdpa flash; pytorch): the sampler, then the engine's throughput curve"
  "throughput-mixed|PARTS=mixed bench/gpu_throughput.sh: the curve over mixed lengths, policy measured by the engine"
  "multi-gpu|bench/gpu_multi.sh (\$PER_GPU): audio per second, one GPU vs all (one engine each); 2+ GPUs"
  "sampler-speed|bench/gpu_sampler_speed.sh \$VARIANTS (plain; cudnn, compile): the sampler alone"
  "new-lengths|bench/gpu_new_lengths.sh \$ARGS (--prewarmed, --split-only): the cost of a length seen for the first time"
  "synthesis|bench/gpu_synthesis.sh: F5-TTS's sampler and pipeline vs the worker's, speed and fp16 numerics per backend"
  "numerics-fa4|bench/sampler_speed.py --kernels --fa4: the fp16 numerics of the engine's Triton kernels with FA4 and SDPA vs the yardstick (carry .fa4a-c, then .device)"
  "synthesis-fa4|the same with flash-attn-4 on the path: the worker with FA4 for unmasked batches too (carry .fa4a-c, then .device)"
  "load|bench/gpu_load.sh: the HTTP load test against serve at the real size: 64 clients, then an open loop (RELIABILITY.md)"
  "realtime|bench/gpu_realtime.sh: streamed first audio vs the whole file; one request at NFE 7, 16 and 32 (EPSS)"
  "ab|bench/gpu_ab.sh (\$AB_PARTS: throughput, cold-start): trees from bench/ab_prepare.sh REV... against now, one machine"
  "probe-step|bench/probes/gpu_step_probe.sh: where a sampling step's time goes (record: ran at 2a1a2c9, no longer runs)"
  "probe-kernels|bench/probes/gpu_kernels.sh: the position convolution four ways, then the sampler (probe)"
  "probe-capture|bench/probes/capture_threads.py: step-graph captures while another thread uses the GPU (probe)"
  "probe-rounding|bench/probes/rounding.py: the kernels bit for bit against F5-TTS's fp16 modules, numerics per variant"
  "probe-request|bench/probes/request_timeline.py: one request's time in the engine, phase by phase, and its profile"
  "probe-prelude|bench/probes/prelude_graphs.py: a request's text embeddings and vocoder, eager vs CUDA graph"
  "probe-lengths|bench/probes/frame_lengths.py (\$LENGTHS_ARGS: --sweeps B:FIRST-LAST:STEP,...): a step's time by length"
  "probe-context|bench/probes/capture_context.py: step graphs captured on the main, the batcher's and a new thread"
  "probe-attention|bench/probes/attention_lengths.py: the attention alone around multiples of 128 frames, five ways"
  "probe-cudnn-frontend|bench/probes/cudnn_frontend_attention.py: cuDNN's graphs built once: padded and packed keys (needs .device/extra)"
  "probe-triton-tma|bench/probes/triton_tma_attention.py: a Triton flash attention reading through TMA descriptors, swept"
  "probe-fa4|bench/probes/fa4_attention.py \$FA4_ARGS (--tiles 192:144,...): FlashAttention-4's CuTe kernels against cuDNN (carry .fa4a, .fa4b, then .fa4c; not .device)"
  "probe-fa4-engine|the worker's FA4 check (python -m f5_worker.fa4), then throughput.py (\$CONCURRENCY, \$MAX_BATCH) with FA4 for unmasked batches and without (carry .fa4a-c, then .device)"
  "probe-qkv-gemm|bench/probes/qkv_rotation_gemm.py: a Triton q/k/v projection with the rotation in its epilogue against cuBLAS + rotate_qk_"
  "probe-quack-qkv|bench/probes/quack_qkv.py: quack's CuTe-DSL GEMM and RoPE epilogue on the q/k/v projection against cuBLAS + rotate_qk_ (carry .fa4a-c, then .device)"
  "probe-batch|bench/probes/batch_timeline.py \$BATCH_ARGS (--fa4): a batch of 16's time outside its steps, phase by phase, with the GPU clock (carry .fa4a-c, then .device)"
  "probe-capture-failure|bench/probes/capture_failure.py: a capture that fails, then the next one into its memory pool"
  "probe-rss|bench/probes/gpu_rss_probe.sh: where host memory grew per job with the first engine (probe)"
)

run_suite() {
  case $1 in
    kit) source bench/gpu_env.sh && python3 bench/kit_check.py ;;
    cold-start) bash bench/gpu_cold_start.sh ;;
    bootstrap) bash bench/gpu_run.sh ;;
    worker-check) bash bench/gpu_worker_check.sh ;;
    real-model) bash bench/gpu_real_model.sh ;;
    real-model-fa4) FA4=1 bash bench/gpu_real_model.sh ;;
    real-model-fa4-fetch) FA4=fetch bash bench/gpu_real_model.sh ;;
    tune-reuse) bash bench/gpu_tune_reuse.sh ;;
    step-profile) bash bench/gpu_step_profile.sh ;;
    step-profile-fa4) source bench/gpu_env.sh fa4 && timeout 400 python3 bench/step_profile.py --kernels --fa4 \
        --batches ${STEP_BATCHES:-1,8,16} --frames 1420 --sustained ${SUSTAINED:-20} ${TUNABLEOP:+--tunableop} --json "$OUT/step-profile-fa4.json" \
        2>"$OUT/step-profile-fa4.log" | grep -v '^ \|^{\|^}' ;;
    throughput) bash bench/gpu_throughput.sh ;;
    throughput-mixed) PARTS=mixed bash bench/gpu_throughput.sh ;;
    multi-gpu) bash bench/gpu_multi.sh ;;
    sampler-speed) bash bench/gpu_sampler_speed.sh ${VARIANTS:-plain} ;;
    new-lengths) bash bench/gpu_new_lengths.sh ;;
    synthesis) bash bench/gpu_synthesis.sh ;;
    synthesis-fa4) FA4=1 bash bench/gpu_synthesis.sh ;;
    numerics-fa4) source bench/gpu_env.sh flash fa4 && timeout 420 python3 bench/sampler_speed.py --kernels --fa4 \
        --batches 1 --runs 2 --mixed 2 --json "$OUT/sampler-kernels-fa4.json" 2>"$OUT/sampler-kernels-fa4.log" | grep -v '^ \|^{\|^}' ;;
    load) bash bench/gpu_load.sh ;;
    realtime) bash bench/gpu_realtime.sh ;;
    ab) bash bench/gpu_ab.sh ;;
    probe-step) bash bench/probes/gpu_step_probe.sh ;;
    probe-kernels) bash bench/probes/gpu_kernels.sh ;;
    probe-capture) source bench/gpu_env.sh && timeout 120 python3 bench/probes/capture_threads.py ;;
    probe-rounding) source bench/gpu_env.sh flash && timeout 300 python3 bench/probes/rounding.py --json "$OUT/rounding.json" ;;
    probe-request) source bench/gpu_env.sh && timeout 240 python3 bench/probes/request_timeline.py --json "$OUT/request-timeline.json" ;;
    probe-prelude) source bench/gpu_env.sh && timeout 240 python3 bench/probes/prelude_graphs.py --json "$OUT/prelude-graphs.json" ;;
    probe-lengths) source bench/gpu_env.sh && timeout 560 python3 bench/probes/frame_lengths.py ${LENGTHS_ARGS:-} --json "$OUT/frame-lengths.json" ;;
    probe-context) source bench/gpu_env.sh && timeout 240 python3 bench/probes/capture_context.py --json "$OUT/capture-context.json" ;;
    probe-attention) source bench/gpu_env.sh && timeout 420 python3 bench/probes/attention_lengths.py --json "$OUT/attention-lengths.json" ;;
    probe-cudnn-frontend) source bench/gpu_env.sh && python3 -m pip install -q --no-deps --no-index --target /tmp/cfe-site \
        .device/extra/nvidia_cudnn_frontend-*.whl && PYTHONPATH="$PYTHONPATH:/tmp/cfe-site" timeout 300 \
        python3 bench/probes/cudnn_frontend_attention.py --json "$OUT/cudnn-frontend.json" ;;
    probe-triton-tma) source bench/gpu_env.sh && timeout 400 python3 bench/probes/triton_tma_attention.py --json "$OUT/triton-tma.json" ;;
    probe-fa4) bash bench/probes/fa4_unpack.sh && FA4_SITE=/tmp/fa4/site PYTHONPATH="$PWD/src" timeout 480 \
        python3 bench/probes/fa4_attention.py \
        ${FA4_ARGS:-} --json "$OUT/fa4.json" ;;
    probe-fa4-engine) source bench/gpu_env.sh fa4 \
        && timeout 120 python3 -m f5_worker.fa4 16 64 1424 | tee "$OUT/fa4-check.json"; \
        timeout 240 python3 bench/throughput.py --single-backend fa4 --concurrency ${CONCURRENCY:-1,16,32} ${MAX_BATCH:+--max-batch $MAX_BATCH} \
        --json "$OUT/throughput-fa4.json" 2>"$OUT/throughput-fa4.log" | grep -v '^ \|^{\|^}'; \
        timeout 200 python3 bench/throughput.py --concurrency ${CONCURRENCY:-1,16,32} ${MAX_BATCH:+--max-batch $MAX_BATCH} --json "$OUT/throughput-cudnn.json" \
        2>"$OUT/throughput-cudnn.log" | grep -v '^ \|^{\|^}' ;;
    probe-qkv-gemm) source bench/gpu_env.sh && timeout 420 python3 bench/probes/qkv_rotation_gemm.py --json "$OUT/qkv-gemm.json" ;;
    probe-quack-qkv) source bench/gpu_env.sh fa4 && timeout 420 python3 bench/probes/quack_qkv.py --json "$OUT/quack-qkv.json" ;;
    probe-batch) source bench/gpu_env.sh fa4 && timeout 480 python3 bench/probes/batch_timeline.py ${BATCH_ARGS:---fa4} \
        --json "$OUT/batch-timeline.json" 2>"$OUT/batch-timeline.log" | grep -v '^ \|^{\|^}' ;;
    probe-capture-failure) source bench/gpu_env.sh && timeout 120 python3 bench/probes/capture_failure.py --json "$OUT/capture-failure.json" ;;
    probe-rss) bash bench/probes/gpu_rss_probe.sh ;;
    *) return 127 ;;
  esac
}

if [ $# -eq 0 ]; then
  echo "usage: bash bench/gpu.sh SUITE [SUITE...]   (repo root, .device carried; results under \$OUT)"
  for entry in "${SUITES[@]}"; do printf '  %-17s %s\n' "${entry%%|*}" "${entry#*|}"; done
  exit 0
fi
for suite in "$@"; do  # every name first, so a typo fails before a long run
  printf '%s\n' "${SUITES[@]}" | grep -q "^$suite|" || { echo "unknown suite: $suite (bash bench/gpu.sh lists them)"; exit 2; }
done

FINAL_OUT=${OUT:-/tmp/out}; mkdir -p "$FINAL_OUT"
SCRATCH=/tmp/gpu-out; mkdir -p "$SCRATCH"
failed=0
for suite in "$@"; do
  rm -rf "${SCRATCH:?}/$suite"; mkdir -p "$SCRATCH/$suite"
  echo "===== $suite ($(date -u +%H:%M:%S))"
  began=$SECONDS
  ( export OUT="$SCRATCH/$suite"; run_suite "$suite" )
  rc=$?
  echo "===== $suite: exit $rc after $((SECONDS - began)) s"
  [ $rc -eq 0 ] || failed=$((failed + 1))
done

copied=0
for suite in "$@"; do
  for file in "$SCRATCH/$suite"/*.json; do
    [ -f "$file" ] || continue
    if [ $copied -lt 7 ]; then cp "$file" "$FINAL_OUT/$suite--$(basename "$file")"; copied=$((copied + 1))
    else echo "(not copied to \$OUT, only in the archive: $suite/$(basename "$file"))"; fi
  done
done
tar -czf "$FINAL_OUT/gpu-out.tar.gz" -C "$SCRATCH" "$@" 2>/dev/null
echo "results in \$OUT: $(cd "$FINAL_OUT" && ls | tr '\n' ' ')"
exit $failed
