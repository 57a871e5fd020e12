"""FlashAttention-4 (the ``flash-attn-4`` package) for unmasked attention: checked, chosen, made ready.

On the H200 its Hopper kernels ran F5TTS_v1_Base's attention at 1424 frames and 32 sequences in 663 µs against
cuDNN's 769, and the worker with them made 97.2 s of audio per GPU-second against 90.9 and one request in 111.3
ms against 119.0 (BENCHMARKS.md, "FlashAttention-4 in the worker"). Where the image installed it, or once the
worker fetched it onto the volume (``f5_worker.fa4_fetch``), it is checked and, where it measures faster, used:

1. ``installed()`` reads the package's metadata (nothing is imported), in the environment or a fetched site;
2. ``check()`` runs ``python -m f5_worker.fa4`` in a child process, which imports it, compiles and runs it on
   the GPU at the model's attention shape for one request and for eight (2 and 16 sequences with guidance),
   compares it with SDPA (``REL_TOLERANCE``), captures it into a CUDA graph as the engine will, and times both
   from graph replays: a broken install or an unsupported GPU costs the child, never the worker;
   A passed check is kept on the volume (``save_check``, keyed by ``check_key``): later starts skip the child;
3. ``choose()`` puts unmasked batches on it when it beat SDPA by ``GAIN`` at eight requests and was no slower
   for one (masked batches keep their kernel: it is not used with a mask);
4. ``make_importable()`` runs in the worker before the engine switches: flash-attn-4 ships ``flash_attn/cute/``
   without a ``flash_attn/__init__.py``, so where the flash-attn 2 wheel is active its package ``flash_attn``
   hides FA4's directory (and brings an old ``cute/`` of its own), which then goes first on that package's path;
5. ``prepare()`` imports and compiles it in the worker, still in the background, so the first batch after the
   switch does not wait for either.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import site as site_module
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .attention_choice import FA4, SDPA, AttentionChoice
from .fsutil import write_json_atomic

__all__ = ["DISTRIBUTION", "Fa4Check", "installed", "add_site", "check", "check_key", "saved_check", "save_check",
           "choose", "make_importable", "prepare"]

DISTRIBUTION = "flash-attn-4"
# The check runs at a typical request's length as the engine rounds it (5 s reference + 10 s: 1411 frames, 1424 in
# a bucket of 16): between multiples of 128, where FA4 beats cuDNN (at the multiples they tie).
CHECK_FRAMES = 1424
CHECK_TIMEOUT_S = 300.0  # importing it takes ~10 s, its first compilation ~2 s (H200); a hang must end
REL_TOLERANCE = 2e-2  # mean relative difference from SDPA; fp16 kernels differ by ~3e-4, a broken one by far more
GAIN = 0.97  # FA4 must take at most this share of SDPA's time at eight requests


@dataclass(frozen=True)
class Fa4Check:
    """What the child found: ``ok`` with the timings (ms per call, from CUDA-graph replays) and the numerics,
    or why not."""
    ok: bool
    why: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # fa4_1, sdpa_1, fa4_8, sdpa_8 (requests)
    rel_diff: float | None = None


def installed(site: Path | None = None) -> str | None:
    """flash-attn-4's version where it is installed (in ``site`` when given: one the worker fetched), else
    None (nothing is imported)."""
    if site is not None:
        found = next(iter(importlib.metadata.distributions(name=DISTRIBUTION, path=[str(site)])), None)
        return found.version if found else None
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def add_site(site: Path) -> None:
    """Put a fetched install's ``site`` on this process's path, after everything else (where the image has a
    package the set also pins, einops or protobuf, the image's copy stays the one imported), and run its
    ``.pth`` files as site-packages' are: nvidia-cutlass-dsl's puts its ``dsl_packages`` (``cutlass``) on the
    path that way, and ``pip --target`` leaves it for whoever uses the directory."""
    if str(site) not in sys.path:
        site_module.addsitedir(str(site))
        importlib.invalidate_caches()


def make_importable() -> None:
    """Make ``import flash_attn.cute`` load flash-attn-4's ``flash_attn/cute/``, also where flash-attn 2's
    regular package ``flash_attn`` comes first on the path: that package hides FA4's directory, and flash-attn
    2.8's wheels bring a ``flash_attn/cute/`` of their own, an early copy that does not import against FA4's
    CuTe DSL (on the H200: ``module 'cutlass.cute.core' has no attribute 'ThrMma'``). FA4's directory goes
    first on that package's path (FA4 ships ``flash_attn/cute/`` only, so nothing else is shadowed)."""
    import flash_attn

    files = importlib.metadata.distribution(DISTRIBUTION).files or []
    cute = next((f for f in files if f.as_posix() == "flash_attn/cute/__init__.py"), None)
    if cute is None:
        raise ImportError(f"{DISTRIBUTION} is installed without flash_attn/cute/__init__.py")
    ours = Path(cute.locate()).resolve()
    directory = str(ours.parent.parent)
    if list(flash_attn.__path__)[:1] != [directory]:
        if hasattr(flash_attn.__path__, "insert"):  # a regular package's list (a namespace's path is computed)
            flash_attn.__path__.insert(0, directory)
            importlib.invalidate_caches()
    loaded = sys.modules.get("flash_attn.cute")
    origin = getattr(loaded, "__file__", None) if loaded else getattr(
        importlib.util.find_spec("flash_attn.cute"), "origin", None)
    if origin is None or Path(origin).resolve() != ours:
        raise ImportError(f"flash_attn.cute is {origin}, not {DISTRIBUTION}'s {ours}")


def prepare(heads: int, dim: int, device: str, dtype) -> None:
    """Import flash-attn-4 in this process and compile its kernel with one call on ``device``, shaped and typed
    as the engine hands it over, before the engine switches. Its compile key holds no sequence length, so every
    length after runs compiled. On the H200, without this, the first request after the switch took 5.2 s
    instead of ~0.3 (importing FA4 took ~10 s in the check's child, compiling ~2 s)."""
    import torch

    from .engine.nn.attention import fa4_attention

    with torch.inference_mode():
        fa4_attention(*torch.zeros(2, 128, 3, heads, dim, device=device, dtype=dtype).unbind(2))
        torch.cuda.synchronize(device)


def check_key(version: str, fingerprint) -> str:
    """What a passed check holds for: this FA4 version on this runtime (``Fingerprint.runtime_key``), GPU model and
    driver (the kernels are compiled for the GPU at run time, and timed on it)."""
    runtime = fingerprint.runtime_key()
    facts = json.dumps([version, runtime, fingerprint.gpu_name, fingerprint.driver])
    return f"{version}-{runtime}-{hashlib.sha256(facts.encode()).hexdigest()[:10]}"


def saved_check(root: Path, key: str) -> Fa4Check | None:
    """A passed check kept on the volume by an earlier start (``save_check``), if any: a warm start then skips
    the child (~17 s on the H200, ~10 s of it importing FA4), as flash-attn's published installs skip theirs."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads((root / "fa4" / "checks" / f"{key}.json").read_text())
        return Fa4Check(True, str(data["why"]), {k: float(v) for k, v in data["timings_ms"].items()}, data["rel_diff"])
    return None


def save_check(root: Path, key: str, found: Fa4Check) -> None:
    """Keep a passed check for later starts (a failed one is tried again: its cause may have been passing)."""
    if found.ok:
        write_json_atomic(root / "fa4" / "checks" / f"{key}.json", asdict(found))


def choose(found: Fa4Check, choice: AttentionChoice) -> AttentionChoice:
    """``choice`` with unmasked batches on FA4 when ``found`` says so; otherwise ``choice`` itself. Only an SDPA
    choice is replaced: where flash-attn 2 was measured faster than SDPA unmasked, FA4 was not timed against it."""
    if choice.single != SDPA:
        return choice
    if not found.ok:  # (the reason shows in /health, beside the kernel that stays)
        return replace(choice, single_why=f"{choice.single_why}; FlashAttention-4 not used: {found.why}")
    t = found.timings_ms
    if t["fa4_8"] <= GAIN * t["sdpa_8"] and t["fa4_1"] <= t["sdpa_1"]:
        return replace(choice, single=FA4, single_why=f"FlashAttention-4: {_timings_text(t)}")
    return replace(choice, single_why=f"{choice.single_why}; FlashAttention-4 not faster: {_timings_text(t)}")


def _timings_text(t: dict[str, float]) -> str:
    return (f"{t['fa4_8']:.3f} ms against SDPA's {t['sdpa_8']:.3f} for 8 requests, "
            f"{t['fa4_1']:.3f} against {t['sdpa_1']:.3f} for one")


def check(heads: int, dim: int, frames: int, *, site: Path | None = None,
          timeout_s: float = CHECK_TIMEOUT_S) -> Fa4Check:
    """Run the check in a child process (``python -m f5_worker.fa4``, with ``site`` on its path when given)
    and read its verdict."""
    command = [sys.executable, "-m", "f5_worker.fa4", str(heads), str(dim), str(frames), *([str(site)] if site else [])]
    with tempfile.TemporaryDirectory(prefix="f5-worker-fa4-") as empty:  # (-m puts the cwd first on the path)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=empty,
                                  env=dict(os.environ))
        except subprocess.TimeoutExpired:
            return Fa4Check(False, f"the check took longer than {timeout_s:g} s")
    for line in reversed(done.stdout.strip().splitlines()):
        with contextlib.suppress(ValueError, TypeError, KeyError):
            data = json.loads(line)
            return Fa4Check(bool(data["ok"]), str(data["why"]),
                            {k: float(v) for k, v in data.get("timings_ms", {}).items()}, data.get("rel_diff"))
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return Fa4Check(False, f"the check process ended without a verdict (exit {done.returncode}): {tail[:300]}")


def _replay_ms(fns: dict[str, object], replays: int = 20, rounds: int = 5) -> dict[str, float]:
    """ms per call of each of ``fns`` replayed from a CUDA graph, captured as the engine captures
    (``engine.graphs``): the kernels take turns, round after round, and each keeps its fastest round. The check
    runs while the worker serves and tunes on the same GPU (on a new volume the H200 timed both kernels ~2.3x
    slower than alone): turns share that load between them, the fastest round is the least disturbed."""
    import torch

    from .engine.graphs import GraphPool, capture

    graphs = dict(zip(fns, capture(list(fns.values()), "cuda", GraphPool())))
    for graph in graphs.values():
        for _ in range(3):
            graph.replay()
    best = dict.fromkeys(graphs, float("inf"))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(rounds):
        for name, graph in graphs.items():
            start.record()
            for _ in range(replays):
                graph.replay()
            end.record()
            end.synchronize()
            best[name] = min(best[name], start.elapsed_time(end) / replays)
    return best


def _check_here(heads: int, dim: int, frames: int) -> dict:
    """The child's work: import, numerics, capture and timings at (2 and 16 sequences, frames, heads, dim)."""
    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        return {"ok": False, "why": "no GPU"}
    make_importable()
    from .engine.nn.attention import fa4_attention as fa4  # the engine's own call

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    timings, worst = {}, 0.0
    for requests in (1, 8):
        generator = torch.Generator(device="cuda").manual_seed(requests)
        qkv = torch.randn(2 * requests, frames, 3, heads, dim, device="cuda", dtype=torch.float16, generator=generator)
        q, k, v = qkv.unbind(2)  # the projection's views, as the engine hands them over
        got, expected = fa4(q, k, v).float(), sdpa(q.float(), k.float(), v.float())
        if not torch.isfinite(got).all():
            return {"ok": False, "why": f"non-finite output for {requests} requests"}
        worst = max(worst, float((got - expected).abs().mean() / expected.abs().mean()))
        if not worst <= REL_TOLERANCE:
            return {"ok": False, "why": f"differs from SDPA by {worst:.2e} (mean relative; at most {REL_TOLERANCE:g})"}
        measured = _replay_ms({"fa4": lambda: fa4(q, k, v), "sdpa": lambda: sdpa(q, k, v)})
        timings.update({f"{name}_{requests}": round(ms, 4) for name, ms in measured.items()})
    return {"ok": True, "why": f"{installed()} on {torch.cuda.get_device_name()}", "timings_ms": timings,
            "rel_diff": round(worst, 6)}


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: python -m f5_worker.fa4 HEADS DIM FRAMES [SITE]", file=sys.stderr)
        return 2
    if len(argv) == 4:  # an install the worker fetched (f5_worker.fa4_fetch)
        add_site(Path(argv[3]))
    try:
        result = _check_here(*(int(a) for a in argv[:3]))
    except BaseException as exc:  # report anything the package raises, as data
        result = {"ok": False, "why": f"{type(exc).__name__}: {str(exc)[:300]}",
                  "traceback": traceback.format_exc(limit=5)}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
