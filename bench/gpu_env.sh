# Sourced by the bench/gpu_*.sh scripts on the device machine (no network there): installs F5-TTS's
# inference dependencies from the wheels carried in .device/wheels (and .device/wheels-serve, the RunPod SDK's
# server, with `serve`; the real flash-attn wheel straight onto PYTHONPATH, with `flash`), and puts the
# project's source and the benchmark-only stand-ins on PYTHONPATH. `source bench/gpu_env.sh [serve] [flash]`.
python3 -m pip install -q --no-deps --no-index --target /tmp/deps .device/wheels/*.whl 2>/dev/null
export PYTHONPATH="$PWD/src:/tmp/deps:$PWD/.device/shim" F5_WORKER_LOG_FORMAT=json
if [[ " $* " == *" serve "* ]]; then
  python3 -m pip install -q --no-deps --no-index --target /tmp/deps-serve .device/wheels-serve/*.whl 2>/dev/null
  export PYTHONPATH="$PYTHONPATH:/tmp/deps-serve"
fi
python3 -c "import matplotlib" 2>/dev/null || export PYTHONPATH="$PYTHONPATH:$PWD/.device/shim-mpl"
FLASH_ATTN_WHEEL='flash_attn-2.8.3.post2+cu13torch2.11cxx11abiTRUE-cp312-cp312-linux_x86_64.whl'
if [[ " $* " == *" flash "* ]]; then  # benchmarks that bypass the bootstrap (it installs the same wheel itself)
  python3 .device/make_fa_wheel.py /tmp/fa --name "$FLASH_ATTN_WHEEL" >/dev/null
  python3 -m pip install -q --no-deps --no-index --target /tmp/fa-site /tmp/fa/"$FLASH_ATTN_WHEEL" 2>/dev/null
  export PYTHONPATH="$PYTHONPATH:/tmp/fa-site"
fi
