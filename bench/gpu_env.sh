# Sourced by the bench/gpu_*.sh scripts on the device machine (no network there), from the repo root with
# .device/ carried (built here by `python3 bench/device_kit.py`): installs .device/wheels (the worker's server,
# the RunPod SDK, F5-TTS and its inference dependencies) into /tmp/deps once per machine, puts the project's
# source and /tmp/deps on PYTHONPATH and, with `flash`, the real flash-attn wheel too (for benchmarks that
# bypass the bootstrap). `source bench/gpu_env.sh [flash] [fa4 [fa4-fetch]]` (below) (`serve` is accepted: .device/wheels has it all).
if [ ! -f .device/MANIFEST.json ]; then
  echo "gpu_env.sh: no .device/ kit here: build it with 'python3 bench/device_kit.py' and carry .device" >&2
  return 1 2>/dev/null || exit 1
fi
if ! cmp -s .device/MANIFEST.json /tmp/deps/.kit-manifest.json; then
  rm -rf /tmp/deps
  if ! python3 -m pip install -q --disable-pip-version-check --no-deps --no-index --no-compile --target /tmp/deps \
       .device/wheels/*.whl >/tmp/deps-install.log 2>&1; then
    echo "gpu_env.sh: installing .device/wheels failed:" >&2; tail -5 /tmp/deps-install.log >&2
    return 1 2>/dev/null || exit 1
  fi
  cp .device/MANIFEST.json /tmp/deps/.kit-manifest.json
fi
export PYTHONPATH="$PWD/src:/tmp/deps" F5_WORKER_LOG_FORMAT=json
export F5_WORKER_FA4_INDEX=  # no network here: the worker fetches FlashAttention-4 only where a suite serves it
FLASH_ATTN_WHEEL='flash_attn-2.8.3.post2+cu13torch2.11cxx11abiTRUE-cp312-cp312-linux_x86_64.whl'
if [[ " $* " == *" flash "* ]]; then  # benchmarks that bypass the bootstrap (it installs the same wheel itself)
  [ -f /tmp/fa/"$FLASH_ATTN_WHEEL" ] || python3 .device/make_fa_wheel.py /tmp/fa --name "$FLASH_ATTN_WHEEL" >/dev/null
  [ -d /tmp/fa-site/flash_attn ] || \
    python3 -m pip install -q --no-deps --no-index --target /tmp/fa-site /tmp/fa/"$FLASH_ATTN_WHEEL" 2>/dev/null
  export PYTHONPATH="$PYTHONPATH:/tmp/fa-site"
fi
if [[ " $* " == *" fa4 "* ]]; then  # the pinned FlashAttention-4 set (.fa4a-c), unpacked once: bench/probes/fa4_unpack.sh
  bash bench/probes/fa4_unpack.sh
  # As the worker puts a fetched set on its path (fa4.add_site runs nvidia-cutlass-dsl's .pth), unless the worker
  # is to fetch it itself (fa4-fetch).
  [[ " $* " == *" fa4-fetch "* ]] || export PYTHONPATH="$PYTHONPATH:/tmp/fa4/site:/tmp/fa4/site/nvidia_cutlass_dsl/dsl_packages"
fi
