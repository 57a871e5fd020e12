#!/usr/bin/env bash
# Mixed-length throughput with the engine's own policy measurement, then the HTTP load test (auto concurrency).
set -uo pipefail
PARTS=mixed bash bench/gpu_throughput.sh
bash bench/gpu_load.sh
