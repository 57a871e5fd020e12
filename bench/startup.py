#!/usr/bin/env python3
"""Bootstrap start-up cost: our cold and warm start against `pip install <wheel URL>` at every start.

    python bench/startup.py --wheel FILE [--upstream-name NAME] [--runs 5] [--state-gpu] [--json OUT]

Serves FILE from 127.0.0.1 as a mirror (under NAME, the upstream-style file name, when given) and
measures, each in a fresh process, timed from process start to exit:

- cold: an empty volume; the worker resolves, downloads, stages with pip, verifies in a child,
  publishes and activates. Reported whole and without the download itself.
- warm: the same volume again: the published install is activated (no pip, no network).
- pip every start: what the design we replace did at each cold start: `pip install --no-deps
  --target <fresh dir> <URL>`, then nothing verified.

--state-gpu states a GPU fingerprint (for a CPU machine, with the CPU stand-in wheel of the tests);
without it the live runtime is probed, as in production.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
from f5_worker import log
from f5_worker.settings import Settings
from f5_worker.flash_attn.provision import provision
log.configure("json")
kwargs = {}
if sys.argv[1] != "live":
    from f5_worker.runtime.fingerprint import Fingerprint
    fp = Fingerprint.from_json(json.loads(sys.argv[1]))
    kwargs["detect"] = lambda with_abi=True: fp
verdict = provision(Settings.from_env(), **kwargs)
print(json.dumps({"active": verdict.active, "warm": verdict.warm, "reason": verdict.reason,
                  "provision_s": verdict.seconds, "torch_imported": "torch" in sys.modules}))
"""


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def timed(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    return time.perf_counter() - start, proc


def download_seconds(stderr: str) -> float:
    total = 0.0
    for line in stderr.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("phase") == "flash_attn.download" and entry.get("msg", "").endswith("done"):
                total += entry["duration_ms"] / 1000
    return total


def stated_fingerprint(wheel_name: str) -> str:
    from f5_worker.flash_attn.wheelname import FlashAttnWheel

    wheel = FlashAttnWheel.parse(wheel_name)
    return json.dumps({
        "torch_version": f"{wheel.torch}.0", "torch_cuda": f"{wheel.cuda_major}.8", "cxx11abi": wheel.cxx11abi,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}", "platform": wheel.platform,
        "glibc": os.confstr("CS_GNU_LIBC_VERSION").split()[1], "compute_capability": "9.0", "driver": "580.159.04",
    })


def summary(values: list[float]) -> dict:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "runs": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", required=True, type=Path)
    parser.add_argument("--upstream-name", help="serve the wheel under this (upstream-style) file name")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--state-gpu", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="f5w-bench-"))
    mirror = work / "mirror"
    mirror.mkdir()
    served_name = args.upstream_name or args.wheel.name
    shutil.copyfile(args.wheel, mirror / served_name)
    # pip refuses upstream names (their metadata lacks the +label), so the old design's URL is the plain name.
    pip_name = served_name.split("+")[0] + "-" + served_name.split("-", 2)[2] if "+" in served_name else served_name
    if pip_name != served_name:
        os.link(mirror / served_name, mirror / pip_name)
    server, url = serve(mirror)
    fingerprint = stated_fingerprint(served_name) if args.state_gpu else "live"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("F5_WORKER_", "PIP_"))}
    results: dict = {"cold": [], "cold_beyond_download": [], "download": [], "warm": [], "pip_every_start": []}
    try:
        for run in range(args.runs):
            volume = work / f"volume-{run}"
            env = {**base_env, "F5_WORKER_VOLUME": str(volume), "F5_WORKER_FLASH_ATTN_MIRRORS": url,
                   "F5_WORKER_ALLOW_HTTP": "true", "F5_WORKER_FLASH_ATTN_UPSTREAM": "",
                   "F5_WORKER_FLASH_ATTN": "require"}
            for kind in ("cold", "warm"):
                seconds, proc = timed([sys.executable, "-c", CHILD, fingerprint], env)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{kind} start failed")
                outcome = json.loads(proc.stdout.strip().splitlines()[-1])
                assert outcome["active"] and outcome["warm"] == (kind == "warm"), outcome
                if kind == "warm":
                    assert not outcome["torch_imported"], "a warm start imported torch"
                results[kind].append(seconds)
                if kind == "cold":
                    fetched = download_seconds(proc.stderr)
                    results["download"].append(fetched)
                    results["cold_beyond_download"].append(seconds - fetched)
            target = work / f"pip-target-{run}"
            seconds, proc = timed([sys.executable, "-m", "pip", "install", "--isolated", "--no-deps",
                                   "--disable-pip-version-check", "--target", str(target), url + pip_name], base_env)
            if proc.returncode != 0:
                raise SystemExit(f"pip baseline failed: {proc.stderr[-2000:]}")
            results["pip_every_start"].append(seconds)
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "wheel": served_name, "wheel_bytes": args.wheel.stat().st_size, "fingerprint": fingerprint,
        "results": {k: summary(v) for k, v in results.items()},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
