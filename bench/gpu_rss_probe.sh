#!/usr/bin/env bash
set -uo pipefail
python3 -m pip install -q --no-deps --no-index --target /tmp/deps .device/wheels/*.whl 2>/dev/null
export PYTHONPATH="$PWD/src:/tmp/deps:$PWD/.device/shim"
python3 -c "import matplotlib" 2>/dev/null || export PYTHONPATH="$PYTHONPATH:$PWD/.device/shim-mpl"
python3 bench/gpu_rss_probe.py 2>&1 | grep -v Warning | tail -8
