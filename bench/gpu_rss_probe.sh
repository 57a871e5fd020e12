#!/usr/bin/env bash
set -uo pipefail
source bench/gpu_env.sh
python3 bench/gpu_rss_probe.py 2>&1 | grep -v Warning | tail -8
