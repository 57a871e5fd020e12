"""FlashAttention-4 onto the volume: a pinned set of wheels, installed once by pip, kept and reused.

flash-attn-4 and what it needs that torch does not bring (its CuTe DSL compiler, CUDA 13 bindings; ~300 MB
installed) are too large for a lean image, and they are the same for every start on one kind of machine. So,
like the flash-attn 2 wheel, the worker fetches them after it is ready, in the background:

1. ``plan()`` (pure): whether this runtime can use the set in ``fa4_pins.json`` (a Hopper or Blackwell GPU,
   torch built with the set's CUDA major, a pinned wheel of every package for this Python and platform) and,
   if so, the install's key and pip's requirements, one version and the sha256 of each of its files per
   package (``scripts/pin_fa4.py`` writes the set: the versions the H200 ran);
2. ``fetch()``: the install published on the volume under that key when there is one (a warm start fetches
   nothing); else ``pip install --no-deps --require-hashes --only-binary=:all: --target`` into a staging
   directory beside it, then one rename publishes it (``flash_attn.install.publish``: a worker that loses a
   race takes the winner's). Nothing half-written is ever under the key; no lock is needed.

The install is not imported here: ``f5_worker.fa4.check`` tries it in a child process first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, sys_tags
from packaging.utils import parse_wheel_filename

from . import net
from .errors import F5WorkerError
from .flash_attn import install
from .fsutil import write_json_atomic

__all__ = ["PINS_FILE", "Pins", "Fa4Plan", "Fa4Install", "FetchFailed", "plan", "fetch", "published"]

PINS_FILE = Path(__file__).with_name("fa4_pins.json")
DEFAULT_INDEX = "https://pypi.org/simple"
FETCH_TIMEOUT_S = 1800.0  # the whole install (~300 MB): a stalled pip is ended
SOCKET_TIMEOUT_S = 60  # pip's per-connection timeout
GPU_MAJORS = {9: "Hopper (sm90)", 10: "Blackwell (sm100)"}  # FA4's CuTe kernels are written for these
_PIP_SETTINGS_KEPT = ("PIP_CERT", "PIP_CLIENT_CERT")  # TLS trust stays the environment's; nothing else does


class FetchFailed(F5WorkerError):
    """pip could not install the set (the index unreachable, a file not matching its pin, a timeout)."""


@dataclass(frozen=True)
class Pins:
    """The set: per package one version and the sha256 of each of its wheels."""

    cuda_major: str
    packages: dict[str, tuple[str, dict[str, str]]]  # name -> (version, {wheel filename: sha256})

    @classmethod
    def load(cls, path: Path = PINS_FILE) -> Pins:
        data = json.loads(path.read_text())
        return cls(str(data["cuda_major"]),
                   {name: (p["version"], dict(p["files"])) for name, p in data["packages"].items()})

    @property
    def fa4_version(self) -> str:
        return self.packages["flash-attn-4"][0]


@dataclass(frozen=True)
class Fa4Plan:
    key: str  # the install's directory under <root>/fa4: FA4's version, the CUDA major, Python, platform
    requirements: str  # a pip requirements file: name==version, with every pinned hash


@dataclass(frozen=True)
class Fa4Install:
    site: Path
    warm: bool  # found on the volume: nothing was fetched
    seconds: float


def plan(fingerprint, pins: Pins, tags: Iterable[Tag] | None = None) -> Fa4Plan | str:
    """What to fetch for this runtime (``fingerprint``: ``runtime.fingerprint.Fingerprint``), or why nothing."""
    cc = fingerprint.compute_capability
    if cc is None:
        return "no CUDA GPU"
    major = int(cc.split(".")[0])
    if major not in GPU_MAJORS:
        return f"its kernels are for {' and '.join(GPU_MAJORS.values())} GPUs; this one is sm{cc.replace('.', '')}"
    torch_cuda = fingerprint.torch_cuda
    if torch_cuda is None or torch_cuda.split(".")[0] != pins.cuda_major:
        return f"the pinned set is for torch built with CUDA {pins.cuda_major}; this torch has CUDA {torch_cuda}"
    supported = set(sys_tags() if tags is None else tags)
    lines = []
    for name, (version, files) in pins.packages.items():
        if not any(supported & set(parse_wheel_filename(f)[3]) for f in files):
            return (f"no pinned wheel of {name} {version} for this Python and platform "
                    f"({fingerprint.python_tag}, {fingerprint.platform})")
        lines.append(f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in files.values()))
    key = f"flash-attn-4-{pins.fa4_version}-cu{pins.cuda_major}-{fingerprint.python_tag}-{fingerprint.platform}"
    return Fa4Plan(key, "\n".join(lines) + "\n")


def published(root: Path, key: str) -> Path | None:
    """The site of the install published under ``key``, if there is one."""
    final = root / "fa4" / key
    return final / "site" if (final / install.INSTALL_MANIFEST).is_file() else None


def fetch(fa4_plan: Fa4Plan, root: Path, index_url: str, *, allow_http: bool = False,
          timeout_s: float = FETCH_TIMEOUT_S, on_line: Callable[[str], None] | None = None) -> Fa4Install:
    """The published install of ``fa4_plan``, fetched from ``index_url`` (a PEP 503 index) first when there is
    none. pip's lines that name a file go to ``on_line`` (progress). Raises ``FetchFailed`` saying why."""
    started = time.monotonic()
    site = published(root, fa4_plan.key)
    if site is not None:
        return Fa4Install(site, True, 0.0)
    net.check_url(index_url, allow_http)
    installs = root / "fa4"
    installs.mkdir(parents=True, exist_ok=True)
    install.sweep_stale(installs)
    staging = install.new_staging(installs)
    try:
        requirements = staging / "requirements.txt"
        requirements.write_text(fa4_plan.requirements)
        _pip(["install", "--no-deps", "--require-hashes", "--only-binary=:all:", "--no-compile", "--no-cache-dir",
              "--no-input", "--disable-pip-version-check", "--progress-bar", "off", "--index-url", index_url,
              "--timeout", str(SOCKET_TIMEOUT_S), "--retries", "3", "--target", str(staging / "site"),
              "-r", str(requirements)], timeout_s, on_line)
        seconds = round(time.monotonic() - started, 1)
        write_json_atomic(staging / install.INSTALL_MANIFEST, {
            "key": fa4_plan.key, "requirements": fa4_plan.requirements, "index": index_url, "seconds": seconds})
        final, _ = install.publish(staging, installs / fa4_plan.key)
        return Fa4Install(final / "site", False, seconds)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _pip(args: list[str], timeout_s: float, on_line: Callable[[str], None] | None) -> None:
    """``python -m pip ARGS`` with no pip configuration but TLS trust (the set and its index are ours to say),
    ended after ``timeout_s``; its last lines are the error."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in _PIP_SETTINGS_KEPT}
    env["PIP_CONFIG_FILE"] = os.devnull
    process = subprocess.Popen([sys.executable, "-m", "pip", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env,
                               preexec_fn=install.die_with_parent if sys.platform == "linux" else None)
    timer = threading.Timer(timeout_s, process.kill)
    timer.start()
    tail: list[str] = []
    try:
        for line in process.stdout:
            line = line.rstrip()
            tail = [*tail[-19:], line]
            if on_line is not None and line.lstrip().startswith(("Collecting", "Downloading", "Installing")):
                on_line(line.strip())
        code = process.wait()
    finally:
        timer.cancel()
        process.stdout.close()
    if code != 0:
        ended = f"ended after {timeout_s:g} s" if code == -9 else f"exit {code}"
        lines = [t.strip() for t in tail if t.strip()]
        first_error = next((i for i, t in enumerate(lines) if t.startswith("ERROR")), None)
        causes = [t for t in lines if t.startswith("WARNING: Retrying")][-1:]  # the last retry's cause, if any
        detail = " | ".join(causes + lines[first_error:first_error + 6] if first_error is not None else lines[-3:])
        raise FetchFailed(f"pip ({ended}): {detail}")
