"""Install a flash-attn wheel beside the running environment, verify it, publish it, activate it.

Layout on the volume (``<root>`` is ``$F5_WORKER_VOLUME/f5-worker``)::

    <root>/flash-attn/
        wheels/<upstream file name>.whl             fetched once, kept; written as .*.incomplete + rename
        wheels/<file name>.whl.lease                 best-effort "I am downloading this" marker
        installs/<runtime key>/
            <wheel name without .whl>/               a published install: exists only once verified
                site/                                pip --target output; goes on sys.path
                install.json                         wheel, fingerprint, verification, timings
            .staging-<random>/                       work in progress; never read by anyone else
            rejected/<file name>.json                wheels that failed verification on this runtime

A published directory appears in one ``rename`` of a finished staging directory,
so it is whole or absent; two workers that finish the same install race on that
rename, one wins and the other adopts the winner's. No lock is needed for this.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..errors import (CorruptWheel, InstallFailed, NotAFlashAttnWheel, VerificationCrashed, VerificationFailed,
                      VerificationTimeout)
from ..fsutil import STALE_AFTER_S, write_json_atomic
from ..log import event, get_logger

__all__ = [
    "Layout",
    "Published",
    "wheel_metadata_version",
    "stage",
    "verify",
    "publish",
    "activate",
    "published_installs",
    "read_published",
    "rejected",
    "mark_rejected",
    "sweep_stale",
    "PIP_TIMEOUT_S",
]

log = get_logger("flash_attn.install")
PIP_TIMEOUT_S = 600.0
INSTALL_MANIFEST = "install.json"


@dataclass(frozen=True)
class Layout:
    base: Path  # <root>/flash-attn

    @property
    def wheels(self) -> Path:
        return self.base / "wheels"

    def installs(self, runtime_key: str) -> Path:
        return self.base / "installs" / runtime_key


@dataclass(frozen=True)
class Published:
    path: Path
    wheel: str
    version: str
    manifest: dict

    @property
    def site(self) -> Path:
        return self.path / "site"


# -- inspect -------------------------------------------------------------------------


def wheel_metadata_version(path: Path) -> str:
    """The version the wheel's own METADATA declares; reads every member so a damaged zip is caught here.

    ``CorruptWheel`` for a file that is not a readable wheel, ``NotAFlashAttnWheel`` for a readable
    wheel of another project."""
    try:
        with zipfile.ZipFile(path) as wheel:
            bad = wheel.testzip()
            if bad is not None:
                raise CorruptWheel(f"{path.name}: member {bad} fails its CRC check")
            metadata = [n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(metadata) != 1:
                raise CorruptWheel(f"{path.name}: expected one *.dist-info/METADATA, found {len(metadata)}")
            fields = {}
            for line in wheel.read(metadata[0]).decode("utf-8", "replace").splitlines():
                if not line.strip():
                    break  # the headers end at the first blank line; the description follows
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version"):
                    fields.setdefault(key, value.strip())
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CorruptWheel(f"{path.name} is not a readable wheel: {type(exc).__name__}: {exc}") from exc
    name = fields.get("Name")
    if name is not None and canonicalize_name(name) != "flash-attn":
        raise NotAFlashAttnWheel(path.name, f"its METADATA names the project {name!r}, not flash-attn")
    if "Version" not in fields:
        raise CorruptWheel(f"{path.name}: METADATA has no Version")
    return fields["Version"]


def _pip_filename(path: Path, metadata_version: str) -> str:
    """The name pip accepts for this file.

    Upstream names carry ``+cu12torch2.8cxx11abiTRUE`` but the METADATA inside says
    ``2.8.3``, and pip refuses a wheel whose name and metadata disagree. Installing
    under the metadata's version loses nothing: the label was only ever a file name.
    """
    try:
        _name, name_version, _build, _tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise CorruptWheel(f"{path.name} is not a wheel file name: {exc}") from None
    if name_version == Version(metadata_version):
        return path.name
    distribution, _version, tags = path.name.split("-", 2)
    return f"{distribution}-{metadata_version}-{tags}"


# -- stage, verify, publish ----------------------------------------------------------


def new_staging(installs_dir: Path) -> Path:
    staging = installs_dir / f".staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    return staging


def stage(wheel_path: Path, staging: Path, timeout_s: float = PIP_TIMEOUT_S) -> Path:
    """``pip install --no-deps --target staging/site``; returns the site directory."""
    metadata_version = wheel_metadata_version(wheel_path)
    pip_name = _pip_filename(wheel_path, metadata_version)
    to_install = wheel_path
    if pip_name != wheel_path.name:
        to_install = staging / "wheel" / pip_name
        to_install.parent.mkdir()
        try:
            os.link(wheel_path, to_install)  # same volume: no copy
        except OSError:
            shutil.copyfile(wheel_path, to_install)
        event(log, "renamed wheel for pip", wheel=wheel_path.name, as_=pip_name, metadata_version=metadata_version)
    site = staging / "site"
    # --isolated: no pip config or PIP_* variables from the image can redirect this install;
    # --no-index --no-deps: install exactly this file, fetch nothing, touch nothing else.
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--no-deps",
               "--disable-pip-version-check", "--no-warn-script-location", "--target", str(site), str(to_install)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise InstallFailed(wheel_path.name, f"pip did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        raise InstallFailed(wheel_path.name, proc.stdout + proc.stderr)
    if to_install != wheel_path:
        shutil.rmtree(to_install.parent, ignore_errors=True)
    return site


def _describe_exit(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def die_with_parent() -> None:
    """In the child, before exec: Linux kills it when the worker dies (a killed start must not leave a
    verification hanging on the GPU)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def verify(site: Path, wheel_name: str, timeout_s: float, *, in_place: bool = False, hidden: tuple[str, ...] = ()) -> dict:
    """Run ``f5_worker.flash_attn.verify`` in a child, which must import flash_attn from ``site``.

    A staged install goes first on the child's path. ``in_place``: a flash_attn the base environment
    already imports from ``site`` (its site-packages): the path is left as it is, minus ``hidden``
    (the shadow directory that hides it from this worker's children until it has passed here).

    Raises ``VerificationTimeout`` (the check did not finish), ``VerificationCrashed`` (the child died
    without a result) or ``VerificationFailed`` (the child's report, with its ``stage``).
    """
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in hidden]
    if not in_place:
        paths.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    command = [sys.executable, "-m", "f5_worker.flash_attn.verify", str(site)]
    # ``-m`` puts the working directory first on the child's path: the staged site itself, or an empty
    # directory (a base environment's site-packages must not come before the standard library).
    with tempfile.TemporaryDirectory(prefix="f5-worker-verify-") as empty:
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env,
                                  cwd=empty if in_place else site,
                                  preexec_fn=die_with_parent if sys.platform == "linux" else None)
        except subprocess.TimeoutExpired as exc:
            raise VerificationTimeout(wheel_name, timeout_s) from exc
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            break
    if not isinstance(result, dict):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise VerificationCrashed(wheel_name, f"the check process died ({_describe_exit(proc.returncode)}): {tail}",
                                  proc.returncode)
    if not result.get("ok"):
        stage = result.get("stage")
        raise VerificationFailed(wheel_name, f"at {stage or '?'}: {result.get('error', 'unknown error')}", stage=stage)
    return result


def publish(staging: Path, final: Path) -> tuple[Path, bool]:
    """Rename ``staging`` to ``final``; returns (final, True) if ours, (final, False) if another worker's won."""
    try:
        os.rename(staging, final)
        return final, True
    except OSError:
        if (final / INSTALL_MANIFEST).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            return final, False
        raise


def activate(site: Path) -> None:
    """Make ``site`` win imports in this process and in every child it starts."""
    entry = str(site)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != entry]
    os.environ["PYTHONPATH"] = os.pathsep.join([entry, *paths])
    importlib.invalidate_caches()


# -- what the volume holds -----------------------------------------------------------


def read_published(path: Path) -> Published:
    manifest = json.loads((path / INSTALL_MANIFEST).read_text())
    return Published(path, manifest["wheel"], manifest["version"], manifest)


def published_installs(installs_dir: Path) -> list[Published]:
    """Published installs for one runtime, newest version first; anything unreadable is skipped."""
    found = []
    if not installs_dir.is_dir():
        return found
    for path in installs_dir.iterdir():
        if path.name.startswith(".") or path.name == "rejected" or not path.is_dir():
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            found.append(read_published(path))
    return sorted(found, key=lambda p: Version(p.version), reverse=True)


def rejected(installs_dir: Path) -> dict[str, str]:
    reasons = {}
    folder = installs_dir / "rejected"
    if folder.is_dir():
        for path in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                reasons[path.name[: -len(".json")]] = json.loads(path.read_text())["reason"]
    return reasons


def mark_rejected(installs_dir: Path, wheel_name: str, reason: str) -> None:
    write_json_atomic(installs_dir / "rejected" / f"{wheel_name}.json", {"wheel": wheel_name, "reason": reason, "at": time.time()})


def sweep_stale(installs_dir: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove staging directories left by workers that died mid-install."""
    removed = []
    if not installs_dir.is_dir():
        return removed
    now = time.time()
    for path in installs_dir.glob(".staging-*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > max_age_s:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
