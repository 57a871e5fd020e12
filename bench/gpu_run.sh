#!/usr/bin/env bash
# GPU validation of the flash-attn bootstrap on the device machine (no network there).
# Run from the repo root with .device/ carried (the real flash-attn wheel tree and make_fa_wheel.py
# from ../shared/gpu/); writes its results under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" F5_WORKER_LOG_FORMAT=json
NAME='flash_attn-2.8.3.post2+cu13torch2.11cxx11abiTRUE-cp312-cp312-linux_x86_64.whl'
W=/tmp/fa-wheels; rm -rf "$W" /tmp/vol-*; mkdir -p "$W/good" "$W/broken"

echo "== runtime"; nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
python3 -c 'import torch,sys; print(torch.__version__, torch.version.cuda, torch._C._GLIBCXX_USE_CXX11_ABI, sys.version)'
echo "== rebuild the real wheel"; ( time python3 .device/make_fa_wheel.py "$W/good" --name "$NAME" ) 2>&1 | tail -4

python3 - "$W" "$NAME" <<'PY'
# A broken variant: the same wheel with its CUDA extension cut in half (a damaged download or disk).
import sys, zipfile
w, name = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(f"{w}/good/{name}") as src, zipfile.ZipFile(f"{w}/broken/{name}", "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        data = src.read(item)
        if item.filename.startswith("flash_attn_2_cuda") and item.filename.endswith(".so"):
            data = data[: len(data) // 2]
            print("damaged", item.filename, "to", len(data), "bytes")
        dst.writestr(item, data)
PY

cd "$W/good" && python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 & GOOD=$!
cd "$W/broken" && python3 -m http.server 8766 --bind 127.0.0.1 >/dev/null 2>&1 & BROKEN=$!
sleep 1; cd "$OLDPWD"
common=(F5_WORKER_ALLOW_HTTP=true F5_WORKER_FLASH_ATTN_UPSTREAM=)

echo "== resolve (live runtime, the mirror on 127.0.0.1)"
env "${common[@]}" F5_WORKER_VOLUME=/tmp/vol-resolve F5_WORKER_FLASH_ATTN_MIRRORS=http://127.0.0.1:8765/ \
  python3 -m f5_worker flash-attn resolve --json > "$OUT/resolve.json" 2> "$OUT/resolve.log"; head -c 1500 "$OUT/resolve.json"; echo

echo "== cold start, then warm start (the real bootstrap)"
for kind in cold warm; do
  s=$(python3 -c 'import time; print(time.time())')
  env "${common[@]}" F5_WORKER_VOLUME=/tmp/vol-main F5_WORKER_FLASH_ATTN_MIRRORS=http://127.0.0.1:8765/ \
    python3 -m f5_worker init --json > "$OUT/init-$kind.json" 2> "$OUT/init-$kind.log"
  rc=$?; echo "$kind: exit $rc in $(python3 -c "import time; print(round(time.time() - $s, 3))") s (whole process)"
  python3 -c "import json;r=json.load(open('$OUT/init-$kind.json'))['flash_attn'];print({k:r[k] for k in ('backend','reason','warm','wheel','seconds','backends')});print('verification:',r['verification'])"
done
grep -h '"phase"' "$OUT/init-cold.log" | python3 -c "import sys,json;[print(e['msg'],e.get('duration_ms','')) for e in map(json.loads,sys.stdin) if 'duration_ms' in e]"

echo "== warm start in a process that then imports flash_attn and runs it on the GPU"
env "${common[@]}" F5_WORKER_VOLUME=/tmp/vol-main python3 - <<'PY' 2>/dev/null
import time; t0 = time.perf_counter()
from f5_worker.settings import Settings
from f5_worker.flash_attn.provision import provision
v = provision(Settings.from_env()); t1 = time.perf_counter()
import torch, flash_attn
from flash_attn import flash_attn_func
q = torch.randn(2, 1400, 16, 64, device="cuda", dtype=torch.float16)
o = flash_attn_func(q, q, q); torch.cuda.synchronize()
print(f"activated in {t1-t0:.3f} s (warm={v.warm}); flash_attn {flash_attn.__version__} from {flash_attn.__file__}; output {tuple(o.shape)} finite={bool(o.isfinite().all())}")
PY

echo "== broken wheel (damaged extension) -> SDPA fallback, worker still starts"
env "${common[@]}" F5_WORKER_VOLUME=/tmp/vol-broken F5_WORKER_FLASH_ATTN_MIRRORS=http://127.0.0.1:8766/ \
  python3 -m f5_worker init --json > "$OUT/init-broken.json" 2> "$OUT/init-broken.log"; echo "exit $?"
python3 -c "import json;r=json.load(open('$OUT/init-broken.json'))['flash_attn'];print(r['backend'], '|', r['reason'])"

echo "== start-up benchmark: ours (cold, warm) vs pip install <URL> at every start"
python3 bench/startup.py --wheel "$W/good/$NAME" --runs 3 --json "$OUT/startup.json" 2> "$OUT/startup.log" | tail -40
kill $GOOD $BROKEN
