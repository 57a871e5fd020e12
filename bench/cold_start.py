#!/usr/bin/env python3
"""Cold start of the whole server process: `f5-worker serve` from exec to listening, ready and first audio.

    python bench/cold_start.py [--runs 5] [--volume new] [--volume warm] [--endpoint runsync|openai]
                               [--import-torch-runs N] [--json OUT]

Each start is a fresh `python -m f5_worker serve --port P` (the caller's environment passed through, so
F5_WORKER_MODEL, F5_WORKER_FLASH_ATTN_MIRRORS, F5_WORKER_LEGACY_MODEL_DIRS, F5_WORKER_OFFLINE... apply;
F5_WORKER_MODEL defaults to tiny-random when unset). Timed from just before exec:

- listening: a TCP connection to 127.0.0.1:P succeeds;
- ready: `GET /health` answers 200 with `"status": "ready"` (before that the server may refuse
  connections, or answer 503 with `"status": "initialising"`: when it first did is recorded too);
- first_audio: the first synthesis answered with audio: `POST /runsync` with a 3 s tone made here as
  the reference (`{"output": {"audio": ...}}`), or with --endpoint openai `POST /v1/audio/speech` with
  that tone stored as a voice on the volume;
then SIGTERM, and the time the process took to exit.

Volumes (F5_WORKER_VOLUME): `new`, an empty directory for every run (the first start on a volume: model
migration, flash-attn install and verification, tuning); `warm`, one directory prepared by one untimed
start, then reused by every timed run. Each scenario reports all values and their median.

For scale, `python -c "import torch"` is timed the same way (--import-torch-runs, default --runs);
`ready_over_import_torch` is each scenario's median ready over that median, and `cpu_ready_ratio` the
largest of them (the slowest scenario).

The worker's JSON log lines (stderr, F5_WORKER_LOG_FORMAT=json) that carry `phase` and `duration_ms`
are collected per start with their time since exec (from the line's `ts`), and summed per phase name
into a median breakdown per scenario. Only the standard library is used here; the server needs the
worker installed (or on PYTHONPATH) for --python.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE = 24_000
REF_SECONDS = 3.0
REF_TEXT = "A steady tone for the reference."
TEXT = "The worker is up and speaks its first words."
VOICE = "cold-start-tone"
COMMON_LOG_KEYS = {"ts", "level", "logger", "msg", "phase", "duration_ms"}


class StartFailed(RuntimeError):
    """A start that never got to its first audio; the message says where it stopped."""


def tone_wav(seconds: float = REF_SECONDS, hz: float = 220.0) -> bytes:
    """A 16-bit mono wav of a sine tone with a short fade, made with the standard library."""
    n = int(seconds * SAMPLE_RATE)
    fade = int(0.02 * SAMPLE_RATE)
    samples = []
    for i in range(n):
        gain = min(1.0, i / fade, (n - 1 - i) / fade)
        samples.append(int(0.3 * gain * 32767 * math.sin(2 * math.pi * hz * i / SAMPLE_RATE)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(struct.pack(f"<{n}h", *samples))
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 5.0):
    """(status, headers, body bytes) of one HTTP request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def summary(values: list[float]) -> dict:
    if not values:
        return {"runs": 0}
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "runs": len(values), "values_s": [round(v, 3) for v in values]}


@dataclass
class Start:
    """One timed start of the server, its milestones in seconds since exec."""

    scenario: str
    volume: str
    listening_s: float | None = None
    initialising_s: float | None = None  # first 503 {"status": "initialising"}
    ready_s: float | None = None
    first_audio_s: float | None = None
    first_request_s: float | None = None  # the synthesis request alone
    stop_s: float | None = None  # SIGTERM to exit
    exit_code: int | None = None
    first_log_s: float | None = None  # the first JSON log line: interpreter start and the worker's imports
    audio_bytes: int | None = None
    settled_s: float | None = None  # /health lists nothing pending any more (flash-attn, tuning, graphs done)
    settled_health: dict | None = None
    health: dict | None = None
    phases: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)  # time before ready that no phase covers
    unlogged_s: float | None = None
    error: str | None = None

    def to_json(self) -> dict:
        out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}
        return out


def read_phases(log_path: Path, exec_wall: float) -> tuple[list[dict], float | None]:
    """Every JSON log line with a phase and a duration, with its time since exec; and the first line's time."""
    phases, first = [], None
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at = round(entry["ts"] - exec_wall, 3) if isinstance(entry.get("ts"), (int, float)) else None
        if first is None and at is not None:
            first = at
        if "phase" in entry and "duration_ms" in entry:
            item = {"phase": entry["phase"], "msg": entry.get("msg"), "duration_ms": entry["duration_ms"], "end_s": at}
            if at is not None:
                item["start_s"] = round(at - entry["duration_ms"] / 1000, 3)
            # outcome fields a phase logged (backend, bytes, reason...), kept short
            for key, value in entry.items():
                if key not in COMMON_LOG_KEYS and isinstance(value, (str, int, float, bool)) and key not in item:
                    item[key] = value[:200] if isinstance(value, str) else value
            phases.append(item)
    return phases, first


def unlogged(phases: list[dict], ready_s: float | None, least: float = 0.05) -> list[dict]:
    """Stretches from exec to ready that no logged phase covers (imports, interpreter start, serving set-up)."""
    gaps, cursor, previous = [], 0.0, "exec"
    for item in sorted((p for p in phases if p.get("start_s") is not None), key=lambda p: p["start_s"]):
        if item["start_s"] - cursor >= least:
            gaps.append({"after": previous, "before": item["phase"], "from_s": round(cursor, 3),
                         "seconds": round(item["start_s"] - cursor, 3)})
        if item["end_s"] >= cursor:
            cursor, previous = item["end_s"], item["phase"]
    if ready_s is not None and ready_s - cursor >= least:
        gaps.append({"after": previous, "before": "ready", "from_s": round(cursor, 3), "seconds": round(ready_s - cursor, 3)})
    return gaps


def synthesis_call(args, port: int) -> tuple[int, bytes, bytes]:
    """The first synthesis: (HTTP status, audio bytes or b'', raw body for errors)."""
    if args.endpoint == "openai":
        status, _headers, raw = request(port, "POST", "/v1/audio/speech",
                                        {"input": TEXT, "voice": VOICE, "response_format": "wav"},
                                        timeout=args.request_timeout)
        return status, (raw if status == 200 else b""), raw
    job = {"text": TEXT, "ref_audio": base64.b64encode(tone_wav()).decode(), "ref_text": REF_TEXT, "seed": 0}
    if args.nfe_step:
        job["nfe_step"] = args.nfe_step
    status, _headers, raw = request(port, "POST", "/runsync", {"input": job}, timeout=args.request_timeout)
    try:
        body = json.loads(raw)
    except ValueError:
        return status, b"", raw
    output = body.get("output", body) if isinstance(body, dict) else None
    audio = output.get("audio") if isinstance(output, dict) else None
    return status, (base64.b64decode(audio) if isinstance(audio, str) else b""), raw


def prepare_volume(volume: Path) -> None:
    """The stored voice the OpenAI endpoint names (harmless for /runsync)."""
    voices = volume / "f5-worker" / "voices"
    voices.mkdir(parents=True, exist_ok=True)
    (voices / f"{VOICE}.wav").write_bytes(tone_wav())
    (voices / f"{VOICE}.txt").write_text(REF_TEXT)


def start_once(args, scenario: str, volume: Path, logs: Path, tag: str) -> Start:
    result = Start(scenario=scenario, volume=str(volume))
    prepare_volume(volume)
    port = free_port()
    env = {**os.environ, "F5_WORKER_VOLUME": str(volume), "F5_WORKER_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    env.setdefault("F5_WORKER_MODEL", args.model)
    stderr_path, stdout_path = logs / f"{tag}.stderr.log", logs / f"{tag}.stdout.log"
    with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
        exec_wall = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen([args.python, "-m", "f5_worker", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        since = lambda: time.perf_counter() - t0  # noqa: E731
        try:
            deadline = t0 + args.timeout
            while result.ready_s is None:
                if proc.poll() is not None:
                    raise StartFailed(f"the server exited with {proc.returncode} before it was ready")
                if time.perf_counter() > deadline:
                    raise StartFailed(f"not ready after {args.timeout:.0f} s")
                if result.listening_s is None:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                        result.listening_s = since()
                    except OSError:
                        time.sleep(0.01)
                        continue
                try:
                    status, _headers, raw = request(port, "GET", "/health", timeout=5.0)
                except (OSError, http.client.HTTPException):
                    time.sleep(0.02)
                    continue
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                state = body.get("status") if isinstance(body, dict) else None
                if status == 200 and state == "ready":
                    result.ready_s = since()
                    result.health = body
                elif state == "failed":
                    raise StartFailed(f"/health says the start failed: {raw[:500]!r}")
                elif status == 503 and state == "initialising":
                    if result.initialising_s is None:
                        result.initialising_s = since()
                    time.sleep(0.02)
                elif status in (200, 503):
                    time.sleep(0.02)  # some other state on the way up
                else:
                    raise StartFailed(f"/health answered {status}: {raw[:300]!r}")
            began = time.perf_counter()
            status, audio, raw = synthesis_call(args, port)
            if status != 200 or len(audio) < 100:
                raise StartFailed(f"the first synthesis answered {status} without audio: {raw[:500]!r}")
            result.first_request_s = time.perf_counter() - began
            result.first_audio_s = since()
            result.audio_bytes = len(audio)
            settle_until = time.perf_counter() + args.settle_timeout
            while args.settle_timeout > 0 and time.perf_counter() < settle_until:
                try:
                    _status, _headers, raw = request(port, "GET", "/health", timeout=5.0)
                    body = json.loads(raw)
                except (OSError, http.client.HTTPException, ValueError):
                    body = {}
                if isinstance(body, dict) and body.get("pending") == []:
                    result.settled_s, result.settled_health = since(), body
                    break
                time.sleep(0.1)
        except StartFailed as exc:
            result.error = str(exc)
        except (OSError, http.client.HTTPException) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            stopping = time.perf_counter()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=args.stop_timeout)
                    result.stop_s = time.perf_counter() - stopping
                except subprocess.TimeoutExpired:
                    result.error = (result.error or "") + f" (still running {args.stop_timeout:.0f} s after SIGTERM: killed)"
            try:  # whatever it left behind in its session
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            result.exit_code = proc.returncode
    result.phases, result.first_log_s = read_phases(stderr_path, exec_wall)
    result.gaps = unlogged(result.phases, result.ready_s)
    result.unlogged_s = round(sum(g["seconds"] for g in result.gaps), 3) if result.ready_s is not None else None
    if result.error:
        tail = stderr_path.read_text(errors="replace").splitlines()[-15:]
        result.error += "\n  stderr: " + "\n  stderr: ".join(line[:400] for line in tail)
    return result


def source_revision() -> str | None:
    """`git describe --always --dirty` of this checkout: which worker the figures are of."""
    try:
        return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def time_import_torch(python: str, runs: int) -> list[float]:
    values = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "import torch"], check=True, stdin=subprocess.DEVNULL)
        values.append(time.perf_counter() - t0)
    return values


def phase_breakdown(starts: list[Start]) -> list[dict]:
    """Per phase name: the median over runs of its summed duration in a run, and where it ended (median)."""
    per_run: dict[str, list[float]] = {}
    ends: dict[str, list[float]] = {}
    order: list[str] = []
    for start in starts:
        totals: dict[str, float] = {}
        last_end: dict[str, float] = {}
        for item in start.phases:
            name = item["phase"]
            totals[name] = totals.get(name, 0.0) + item["duration_ms"]
            if item.get("end_s") is not None:
                last_end[name] = item["end_s"]
            if name not in order:
                order.append(name)
        for name, total in totals.items():
            per_run.setdefault(name, []).append(total)
        for name, end in last_end.items():
            ends.setdefault(name, []).append(end)
    rows = []
    for name in order:
        values = per_run[name]
        rows.append({"phase": name, "median_ms": round(statistics.median(values), 1), "runs": len(values),
                     "values_ms": [round(v, 1) for v in values],
                     "median_end_s": round(statistics.median(ends[name]), 3) if name in ends else None})
    return rows


def gap_breakdown(starts: list[Start]) -> list[dict]:
    """Per stretch between two phases (named by them): the median seconds over the runs that had it."""
    per_key: dict[tuple[str, str], list[float]] = {}
    for start in starts:
        for gap in start.gaps:
            per_key.setdefault((gap["after"], gap["before"]), []).append(gap["seconds"])
    return [{"after": a, "before": b, "median_s": round(statistics.median(v), 3), "runs": len(v)}
            for (a, b), v in per_key.items()]


def scenario_summary(starts: list[Start]) -> dict:
    good = [s for s in starts if s.error is None]

    def values(attr):
        return [getattr(s, attr) for s in good if getattr(s, attr) is not None]

    return {
        "runs": len(starts), "failed": len(starts) - len(good),
        **{name: summary(values(name)) for name in
           ("listening_s", "initialising_s", "ready_s", "first_audio_s", "first_request_s", "settled_s", "stop_s", "first_log_s",
            "unlogged_s")},
        "phases": phase_breakdown(good),
        "gaps": gap_breakdown(good),
    }


def print_scenario(name: str, result: dict) -> None:
    print(f"\n== volume {name}: {result['runs']} runs, {result['failed']} failed")
    for key in ("listening_s", "initialising_s", "ready_s", "first_audio_s", "first_request_s", "settled_s", "stop_s", "first_log_s",
                "unlogged_s"):
        s = result[key]
        if s["runs"]:
            print(f"  {key:16} median {s['median_s']:8.3f} s   all {s['values_s']}")
    if result["phases"]:
        print("  phases (median per start, summed per name; ends at s since exec):")
        for row in result["phases"]:
            end = f"{row['median_end_s']:8.3f}" if row["median_end_s"] is not None else "       -"
            print(f"    {row['phase']:32} {row['median_ms']:10.1f} ms   ends {end} s   ({row['runs']} runs)")
    if result["gaps"]:
        print("  not covered by any phase (median s):")
        for gap in result["gaps"]:
            print(f"    {gap['after']} -> {gap['before']}: {gap['median_s']:.3f} s   ({gap['runs']} runs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed starts per volume scenario")
    parser.add_argument("--volume", action="append", choices=("new", "warm"),
                        help="scenario, repeatable (default: new and warm)")
    parser.add_argument("--endpoint", choices=("runsync", "openai"), default="runsync")
    parser.add_argument("--model", default="tiny-random", help="F5_WORKER_MODEL when the environment sets none")
    parser.add_argument("--nfe-step", type=int, help="nfe_step of the first request (/runsync; default the worker's)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the server")
    parser.add_argument("--import-torch-runs", type=int, help="timed `import torch` processes (default --runs; 0: none)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a start may take to be ready")
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--stop-timeout", type=float, default=90.0)
    parser.add_argument("--settle-timeout", type=float, default=180.0,
                        help="after the first audio, wait this long for /health to list nothing pending (0: don't); "
                             "the warm volume is prepared by a start that settled")
    parser.add_argument("--work-dir", type=Path, help="where volumes and logs go (default: a temp dir, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the volumes and the servers' logs")
    parser.add_argument("--json", type=Path, help="write everything here")
    args = parser.parse_args()
    scenarios = list(dict.fromkeys(args.volume or ["new", "warm"]))

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="f5w-cold-start-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    starts: dict[str, list[Start]] = {}
    prepared: dict | None = None
    try:
        torch_runs = args.runs if args.import_torch_runs is None else args.import_torch_runs
        import_torch = time_import_torch(args.python, torch_runs) if torch_runs else []
        print(f"import torch: {summary(import_torch)}", flush=True)
        for scenario in scenarios:
            starts[scenario] = []
            if scenario == "warm":
                volume = work / "volume-warm"
                shutil.rmtree(volume, ignore_errors=True)
                volume.mkdir()
                first = start_once(args, "warm-prepare", volume, logs, "warm-prepare")
                prepared = first.to_json()
                print(f"warm volume prepared (untimed start): ready {first.ready_s and round(first.ready_s, 3)} s"
                      + (f"; FAILED: {first.error}" if first.error else ""), flush=True)
                if first.error:
                    continue
            for run in range(args.runs):
                if scenario == "new":
                    volume = work / f"volume-new-{run}"
                    volume.mkdir()
                result = start_once(args, scenario, volume, logs, f"{scenario}-{run}")
                starts[scenario].append(result)
                print(f"{scenario} #{run + 1}: listening {result.listening_s and round(result.listening_s, 3)} s, "
                      f"ready {result.ready_s and round(result.ready_s, 3)} s, "
                      f"first audio {result.first_audio_s and round(result.first_audio_s, 3)} s"
                      + (f"\n  FAILED: {result.error}" if result.error else ""), flush=True)
                if scenario == "new" and not args.keep:
                    shutil.rmtree(volume, ignore_errors=True)
    finally:
        if args.keep:
            print(f"volumes and server logs kept in {work}")
        elif args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    results = {name: scenario_summary(runs) for name, runs in starts.items()}
    torch_median = statistics.median(import_torch) if import_torch else None
    for result in results.values():
        ready = result["ready_s"]
        result["ready_over_import_torch"] = (round(ready["median_s"] / torch_median, 2)
                                             if torch_median and ready["runs"] else None)
    ratios = [r["ready_over_import_torch"] for r in results.values() if r["ready_over_import_torch"] is not None]
    report = {
        "benchmark": "cold_start",
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "source": source_revision(),
        "settings": {k: v for k, v in sorted(os.environ.items()) if k.startswith("F5_WORKER_")}
                    | {"F5_WORKER_MODEL": os.environ.get("F5_WORKER_MODEL", args.model)},
        "endpoint": args.endpoint,
        "import_torch": summary(import_torch),
        "cpu_ready_ratio": max(ratios) if ratios else None,
        "results": results,
        "warm_prepare": prepared,
        "starts": {name: [s.to_json() for s in runs] for name, runs in starts.items()},
    }
    for name, result in results.items():
        print_scenario(name, result)
        print(f"  ready / import torch: {result['ready_over_import_torch']}")
    print(f"\ncpu_ready_ratio (slowest scenario's median ready / median import torch): {report['cpu_ready_ratio']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = sum(r["failed"] for r in results.values()) + (1 if prepared and prepared.get("error") else 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
