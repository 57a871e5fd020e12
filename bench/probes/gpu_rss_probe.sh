#!/usr/bin/env bash
# A probe (RELIABILITY.md, "On the H100 with the real model size"): where host memory grows per job, engine vs
# sampler vs vocoder vs service on a thread pool. First run with the first engine; ported to the worker's own.
set -uo pipefail
source bench/gpu_env.sh
python3 bench/probes/gpu_rss_probe.py 2>&1 | grep -v Warning | tail -8
