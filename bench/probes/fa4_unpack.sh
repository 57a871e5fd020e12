#!/usr/bin/env bash
# On the device machine, from the repo root with .fa4a-c carried (bench/probes/fa4_kit.sh): the pinned FlashAttention-4
# wheels into /tmp/fa4/wheels, installed into /tmp/fa4/site (as the worker's fetch installs them: pip --target),
# and a PEP 503 index of them at /tmp/fa4/index (http.server's listings) for the worker's own fetch. Once a machine.
set -euo pipefail
[ -d /tmp/fa4/site ] && exit 0
if ! ls .fa4a/fa4-part.* .fa4b/fa4-part.* .fa4c/fa4-part.* >/dev/null 2>&1; then
  echo "fa4_unpack.sh: no FA4 kit here: carry .fa4a, .fa4b, then .fa4c (bench/probes/fa4_kit.sh)" >&2; exit 1
fi
mkdir -p /tmp/fa4 && cat .fa4a/fa4-part.* .fa4b/fa4-part.* .fa4c/fa4-part.* | tar -x -C /tmp/fa4
for wheel in /tmp/fa4/wheels/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1 | tr '_' '-' | tr '[:upper:]' '[:lower:]')
  mkdir -p "/tmp/fa4/index/$name" && ln -sf "$wheel" "/tmp/fa4/index/$name/"
done
python3 -m pip install -q --no-deps --no-index --target /tmp/fa4/site.tmp /tmp/fa4/wheels/*.whl
mv /tmp/fa4/site.tmp /tmp/fa4/site
