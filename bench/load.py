"""A bounded load test of the local API: N clients posting /runsync jobs for T seconds (or up to a cap).

    python bench/load.py --start --clients 4 --seconds 60 --nfe-step 4      # starts `f5-worker serve` (tiny-random)
    python bench/load.py --url http://127.0.0.1:8000 --pid 1234 --clients 8 --seconds 120   # a server already up
    python bench/load.py --start --rate 20 --seconds 60                     # open loop: 20 requests/s, come what may

Closed loop (``--clients``): each client sends its next request when the last is answered. Open loop
(``--rate``): requests leave on a fixed schedule whatever the server does, as a public endpoint's traffic
does, so a rate above capacity shows the worker's backpressure: a 429 with ``Retry-After`` is a correct
answer (counted as ``refused``), a request still unanswered at ``--request-timeout`` is a problem.

Every request carries a unique seed and a small inline reference (a 2 s tone). Each answer is
checked: COMPLETED with decodable audio and the seed that was sent, or FAILED with an error string;
anything else (a timeout, a dropped connection, a 5xx, a wrong seed, an id seen twice) is counted as a
problem. ``sent == answered`` and unique job ids are checked at the end. The server's RSS is sampled
every second (``/proc/<pid>/status`` VmRSS) and reported as start / end / max and as a least-squares
slope per 100 completed requests. Prints one JSON object; exits 1 when any request was lost, duplicated
or wrong. Bounded: the run stops at ``--seconds`` or ``--max-requests``, whichever comes first, and each
request has its own ``--request-timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np

REF_TEXT = "A steady tone for the reference."
BAD_REF = "data:audio/wav;base64,UklGRgAAAABXQVZF"  # base64 of a wav header cut short: must come back FAILED with an error
TEXT = "The quick brown fox jumps over the lazy dog, and the worker answers every request."


def reference_b64(seconds: float = 2.0, hz: float = 220.0, rate: int = 24_000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return base64.b64encode(buffer.getvalue()).decode()


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3 or len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(volume: Path, startup_timeout_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "F5_WORKER_VOLUME": str(volume), "F5_WORKER_MODEL": "tiny-random",
           "F5_WORKER_OFFLINE": "true", "F5_WORKER_LEGACY_MODEL_DIRS": ""}
    log = open(volume / "serve.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([sys.executable, "-m", "f5_worker", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {(volume / 'serve.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server did not answer /health within {startup_timeout_s:g} s")


class Run:
    def __init__(self, args, ref: str):
        self.args, self.ref = args, ref
        self.sent = self.answered = 0
        self.completed = self.failed = 0
        self.latencies: list[float] = []
        self.problems: list[str] = []
        self.job_ids: list[str] = []
        self.errors: dict[str, int] = {}
        self.seed = args.seed_base
        self.stop_at = 0.0
        self.refused = 0  # 429 with Retry-After: the worker's backpressure
        self.in_flight = self.max_in_flight = 0

    def next_seed(self) -> int | None:
        if self.sent >= self.args.max_requests or time.monotonic() >= self.stop_at:
            return None
        self.sent += 1
        self.seed += 1
        return self.seed

    def check(self, seed: int, status: int, body: object, headers=None) -> None:
        if status == 429 and headers is not None and headers.get("retry-after", "").isdigit():
            self.refused += 1
            return
        if status != 200 or not isinstance(body, dict):
            self.problems.append(f"seed {seed}: HTTP {status} {str(body)[:200]}")
            return
        job_id = body.get("id")
        if isinstance(job_id, str):
            self.job_ids.append(job_id)
        if body.get("status") == "COMPLETED":
            out = body.get("output") or {}
            try:
                audio = base64.b64decode(out["audio"], validate=True)
            except (KeyError, TypeError, ValueError):
                self.problems.append(f"seed {seed}: COMPLETED without decodable audio")
                return
            if out.get("seed") != seed:
                self.problems.append(f"seed {seed}: answer carries seed {out.get('seed')}")
            elif not audio.startswith(b"RIFF"):
                self.problems.append(f"seed {seed}: audio is not a wav file")
            else:
                self.completed += 1
        elif body.get("status") == "FAILED" and isinstance(body.get("error"), str) and body["error"]:
            self.failed += 1
            key = body["error"][:80]
            self.errors[key] = self.errors.get(key, 0) + 1
        else:
            self.problems.append(f"seed {seed}: neither COMPLETED nor FAILED with an error: {str(body)[:200]}")

    async def client(self, http: httpx.AsyncClient) -> None:
        while (seed := self.next_seed()) is not None:
            await self.one(http, seed)

    async def open_loop(self, http: httpx.AsyncClient) -> None:
        """Requests at ``--rate`` per second on a fixed schedule, each on its own task."""
        tasks, began = [], time.monotonic()
        while (seed := self.next_seed()) is not None:
            tasks.append(asyncio.create_task(self.one(http, seed)))
            await asyncio.sleep(max(0.0, began + len(tasks) / self.args.rate - time.monotonic()))
        await asyncio.gather(*tasks)

    async def one(self, http: httpx.AsyncClient, seed: int) -> None:
        bad = self.args.bad_every and (seed - self.args.seed_base) % self.args.bad_every == 0
        payload = {"input": {"text": self.args.text, "ref_audio": BAD_REF if bad else self.ref,
                             "ref_text": REF_TEXT, "nfe_step": self.args.nfe_step, "seed": seed,
                             "output_format": "wav"}}
        began = time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await http.post(f"{self.args.url}/runsync", json=payload)
            body: object = response.json() if response.content else None
            status = response.status_code
        except (httpx.HTTPError, ValueError) as exc:
            self.problems.append(f"seed {seed}: {type(exc).__name__}: {exc}")
            return
        finally:
            self.in_flight -= 1
        self.answered += 1
        if status != 429:
            self.latencies.append(time.monotonic() - began)
        self.check(seed, status, body, response.headers)


async def sample_rss(pid: int | None, run: Run, samples: list[tuple[float, int, int]], stop: asyncio.Event) -> None:
    if pid is None:
        return
    t0 = time.monotonic()
    while not stop.is_set():
        kib = rss_kib(pid)
        if kib is not None:
            samples.append((time.monotonic() - t0, run.answered, kib))
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass


async def main_async(args) -> dict:
    run = Run(args, reference_b64())
    samples: list[tuple[float, int, int]] = []
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    connections = args.clients if not args.rate else max(64, int(args.rate * args.request_timeout))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=min(connections, 256))
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as http:
        if args.warmup:  # one request first, so the figures are of a warm server
            await http.post(f"{args.url}/runsync", json={"input": {"text": "Warm up.", "ref_audio": run.ref,
                                                                   "ref_text": REF_TEXT, "nfe_step": args.nfe_step}})
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(args.pid, run, samples, stop))
        began = time.monotonic()
        run.stop_at = began + args.seconds
        if args.rate:
            await run.open_loop(http)
        else:
            await asyncio.gather(*(run.client(http) for _ in range(args.clients)))
        elapsed = time.monotonic() - began
        stop.set()
        await sampler

    duplicates = len(run.job_ids) - len(set(run.job_ids))
    lost = run.sent - run.answered
    rss = [kib for _, _, kib in samples]
    per_100 = slope([float(n) for _, n, _ in samples], [float(k) for _, _, k in samples])
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    return {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "url": args.url, "mode": f"open loop, {args.rate:g} requests/s" if args.rate else f"{args.clients} clients",
        "clients": None if args.rate else args.clients, "seconds": args.seconds, "max_requests": args.max_requests,
        "nfe_step": args.nfe_step, "text_chars": len(args.text), "bad_every": args.bad_every,
        "elapsed_s": round(elapsed, 2),
        "sent": run.sent, "answered": run.answered, "completed": run.completed, "failed": run.failed,
        "refused_429": run.refused, "max_in_flight": run.max_in_flight,
        "lost": lost, "duplicate_ids": duplicates, "unique_ids": len(set(run.job_ids)),
        "problems": run.problems[:20], "problem_count": len(run.problems), "failed_errors": run.errors,
        "throughput_rps": round(run.answered / elapsed, 3) if elapsed else None,
        "latency_ms": {"p50": ms(percentile(run.latencies, 0.50)), "p95": ms(percentile(run.latencies, 0.95)),
                       "p99": ms(percentile(run.latencies, 0.99)), "max": ms(max(run.latencies, default=None))},
        "rss_mib": None if not rss else {
            "pid": args.pid, "samples": len(rss), "start": round(rss[0] / 1024, 1), "end": round(rss[-1] / 1024, 1),
            "max": round(max(rss) / 1024, 1),
            "slope_per_100_requests": None if per_100 is None else round(per_100 * 100 / 1024, 2),
            "second_half_slope_per_100_requests": (
                None if (s := slope([float(n) for _, n, _ in samples[len(samples) // 2:]],
                                    [float(k) for _, _, k in samples[len(samples) // 2:]])) is None
                else round(s * 100 / 1024, 2)),
        },
        "ok": lost == 0 and duplicates == 0 and not run.problems and run.answered > 0,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running `f5-worker serve`, e.g. http://127.0.0.1:8000")
    target.add_argument("--start", action="store_true", help="start `f5-worker serve` with tiny-random here")
    p.add_argument("--pid", type=int, help="the server's pid, for RSS (set by --start)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second on a fixed schedule")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--max-requests", type=int, default=10_000)
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--nfe-step", type=int, default=4)
    p.add_argument("--text", default=TEXT)
    p.add_argument("--bad-every", type=int, default=0,
                   help="every Nth request sends a broken reference (expects FAILED with an error); 0: none")
    p.add_argument("--seed-base", type=int, default=1_000_000)
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.max_requests < 1 or args.rate < 0:
        p.error("--clients, --seconds, --max-requests and --rate must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    proc = None
    with tempfile.TemporaryDirectory(prefix="f5-load-") as tmp:
        if args.start:
            proc, args.url = start_server(Path(tmp), args.startup_timeout)
            args.pid = proc.pid
        try:
            result = asyncio.run(main_async(args))
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if proc is not None:
            result["server_exit_status"] = proc.returncode
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
