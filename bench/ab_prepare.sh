#!/usr/bin/env bash
# Here, before an A/B run on the device machine: the src/ and bench/ of each named commit into .device/ab/REV
# (carried with .device), so `bash bench/gpu.sh ab` times each tree against the working tree on one machine.
#   bash bench/ab_prepare.sh 891ef1a ba93216
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .device/ab
for rev in "$@"; do
  mkdir -p ".device/ab/$rev"
  git archive "$rev" src bench | tar -x -C ".device/ab/$rev"
done
du -sh .device/ab
