#!/usr/bin/env bash
# The whole worker on the GPU with a good and with a broken flash-attn wheel (tiny-random model).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu_env.sh
NAME=$FLASH_ATTN_WHEEL
mkdir -p /tmp/good /tmp/broken; python3 .device/make_fa_wheel.py /tmp/good --name "$NAME" >/dev/null
python3 - <<'PY'
import zipfile
name = 'flash_attn-2.8.3.post2+cu13torch2.11cxx11abiTRUE-cp312-cp312-linux_x86_64.whl'
with zipfile.ZipFile(f"/tmp/good/{name}") as src, zipfile.ZipFile(f"/tmp/broken/{name}", "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        data = src.read(item)
        dst.writestr(item, data[: len(data) // 2] if item.filename.endswith(".so") else data)
PY
for kind in good broken; do
  echo "== $kind wheel"
  F5_WORKER_VOLUME=/tmp/vol-$kind F5_WORKER_ALLOW_HTTP=true F5_WORKER_FLASH_ATTN_UPSTREAM= \
    F5_WORKER_FLASH_ATTN_MIRRORS=/tmp/$kind F5_WORKER_MODEL=tiny-random F5_WORKER_OFFLINE=true \
    python3 bench/gpu_worker_check.py 2> "$OUT/worker-$kind.log" | tee "$OUT/worker-$kind.json"
done
