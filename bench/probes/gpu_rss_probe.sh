#!/usr/bin/env bash
# A probe (RELIABILITY.md, "On the H100 with the real model size"): where host memory grew per job with the
# first engine, engine vs service vs thread pool. Written against that engine; kept as the record of the method.
set -uo pipefail
source bench/gpu_env.sh
python3 bench/probes/gpu_rss_probe.py 2>&1 | grep -v Warning | tail -8
