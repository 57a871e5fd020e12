#!/usr/bin/env python3
"""Build `.device/`, the kit the GPU scripts (bench/gpu.sh, bench/gpu_*.sh) need on the GPU machine.

    python3 bench/device_kit.py [--shared ../shared/gpu] [--check]

The GPU machine (CPython 3.12, manylinux x86_64, torch 2.11.0+cu130) has no network, so everything it lacks
travels in `.device/` (git-ignored; the device tool carries it: `carry: [".device"]`):

    .device/
      wheels/            bench/device-requirements.txt, downloaded for cp312 manylinux x86_64 with --no-deps
                         (a package with no wheel on PyPI is built here from its sdist: pure Python only)
      flash_attn-2.8.3.post2-sm90-torch2.11-cu130-cp312.tree.tar.xz   the files of the real flash-attn wheel
      make_fa_wheel.py   rebuilds that wheel from the tree (about 12 s): both copied from ../shared/gpu/
      MANIFEST.json      what was built: each file's size and sha256, the requirements it was built from

Idempotent: a wheel already there at its pinned version is kept, a wheel no longer pinned is removed, the
shared files are copied only when they differ. --check builds nothing: it says what is missing or stale and
exits 1 if anything is. The whole kit must stay well under the device tool's 64 MiB carry limit (the
working tree travels too); its size is printed at the end, and a kit over 56 MiB is an error.

Uses only the standard library and pip (run it with any Python 3.9+ that has pip; the downloads name the
target interpreter explicitly, so the local Python's version does not matter).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / ".device"
REQUIREMENTS = ROOT / "bench" / "device-requirements.txt"
SHARED_NAMES = ("flash_attn-2.8.3.post2-sm90-torch2.11-cu130-cp312.tree.tar.xz", "make_fa_wheel.py")
PYTHON_VERSION = "3.12"
# glibc 2.39 on the GPU machine: every manylinux tag up to it is acceptable; pip matches N exactly, so name them.
PLATFORMS = ["manylinux2014_x86_64", "manylinux1_x86_64"] + [f"manylinux_2_{n}_x86_64" for n in range(39, 4, -1)]
MAX_KIT_MIB = 56  # the device tool carries 64 MiB in all, the working tree included

def step(message: str) -> None:
    print(f"[device-kit] {message}", flush=True)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{normalised name: version} from `NAME==VERSION  # why` lines."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        if not match:
            raise SystemExit(f"{path.name}:{number}: expected NAME==VERSION, got {line!r}")
        name = normalise(match[1])
        if name in pins:
            raise SystemExit(f"{path.name}:{number}: {name} is pinned twice")
        pins[name] = match[2]
    return pins


def wheel_identity(filename: str) -> tuple[str, str, list[str]]:
    """(normalised name, version, tags) of a wheel file name."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"not a wheel file name: {filename}")
    return normalise(parts[0]), parts[1], parts[-3:]


def fits_target(tags: list[str]) -> str | None:
    """Why a wheel cannot install on CPython 3.12 / manylinux x86_64 (glibc 2.39), or None when it can."""
    python, abi, platform = tags
    pythons = python.split(".")
    if not any(p in ("py3", "cp312") or (p.startswith("cp3") and abi == "abi3" and int(p[3:]) <= 12) for p in pythons):
        return f"python tag {python}/{abi}"
    platforms = platform.split(".")
    for p in platforms:
        if p == "any" or p in ("manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"):
            return None
        m = re.fullmatch(r"manylinux_2_(\d+)_x86_64", p)
        if m and int(m[1]) <= 39:
            return None
    return f"platform tag {platform}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


def download(pins: dict[str, str], dest: Path) -> None:
    """All pins as wheels for the GPU machine; one pip call for the lot, then one per pin that failed."""
    specs = [f"{name}=={version}" for name, version in pins.items()]
    target = ["--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION, "--implementation", "cp",
              "--abi", "cp312", "--abi", "abi3", "--abi", "none", *sum((["--platform", p] for p in PLATFORMS), []),
              "--platform", "any", "-d", str(dest)]
    if pip("download", *target, *specs).returncode == 0:
        return
    for spec in specs:  # find the ones without a fitting wheel
        if pip("download", *target, spec).returncode == 0:
            continue
        step(f"  {spec}: no wheel for cp312 manylinux x86_64 on the index; building one from its sdist")
        with tempfile.TemporaryDirectory() as tmp:
            built = pip("wheel", "--no-deps", "--no-binary", ":all:", "-w", tmp, spec)
            wheels = list(Path(tmp).glob("*.whl"))
            if built.returncode != 0 or len(wheels) != 1:
                raise SystemExit(f"{spec}: neither a wheel nor a buildable sdist:\n{built.stderr[-2000:]}")
            why = fits_target(wheel_identity(wheels[0].name)[2])
            if why:
                raise SystemExit(f"{spec}: the wheel built here ({wheels[0].name}) does not fit the GPU machine: {why}")
            shutil.move(str(wheels[0]), dest / wheels[0].name)


def build_wheels(pins: dict[str, str], wheels: Path, check: bool) -> list[str]:
    """Make wheels/ hold exactly one fitting wheel per pin; returns the problems (check mode) or []."""
    problems: list[str] = []
    have: dict[str, Path] = {}
    for path in sorted(wheels.glob("*.whl")) if wheels.is_dir() else []:
        name, version, tags = wheel_identity(path.name)
        if pins.get(name) != version or name in have:
            problems.append(f"stale wheel {path.name} (pinned: {pins.get(name, 'not at all')})")
            if not check:
                path.unlink()
                step(f"  removed {path.name}")
            continue
        have[name] = path
    missing = {name: version for name, version in pins.items() if name not in have}
    problems += [f"missing {name}=={version}" for name, version in missing.items()]
    if check:
        return problems
    if not missing:
        step(f"  all {len(pins)} wheels up to date")
        return []
    step(f"downloading {len(missing)} of {len(pins)} wheels (cp312, manylinux x86_64, --no-deps)")
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        download(missing, Path(tmp))
        for path in sorted(Path(tmp).glob("*.whl")):
            name, version, tags = wheel_identity(path.name)
            why = fits_target(tags)
            if why:
                raise SystemExit(f"{path.name} does not fit the GPU machine: {why}")
            if missing.get(name) != version:
                raise SystemExit(f"pip fetched {path.name}, which no pin asked for")
            shutil.move(str(path), wheels / path.name)
            step(f"  {path.name} ({(wheels / path.name).stat().st_size / 1024:.0f} KiB)")
    left = [name for name in missing if not any(wheel_identity(p.name)[0] == name for p in wheels.glob("*.whl"))]
    if left:
        raise SystemExit(f"no wheel came for: {', '.join(left)}")
    return []


def copy_shared(shared: Path, check: bool) -> list[str]:
    problems = []
    for name in SHARED_NAMES:
        source, target = shared / name, KIT / name
        if not source.is_file():
            raise SystemExit(f"{source} is missing: point --shared at the folder holding {', '.join(SHARED_NAMES)}")
        same = target.is_file() and target.stat().st_size == source.stat().st_size and sha256(target) == sha256(source)
        if same:
            step(f"{name}: up to date")
            continue
        problems.append(f"{'stale' if target.exists() else 'missing'} {name}")
        if not check:
            shutil.copyfile(source, target)
            target.chmod(0o755 if name.endswith(".py") else 0o644)
            step(f"{name}: copied from {shared}")
    return problems


def retire_old_layout(check: bool) -> list[str]:
    """Folders earlier kits had and this one does not: wheels-serve (merged into wheels); shim and shim-mpl,
    stand-ins no longer needed (the worker imports neither F5-TTS nor matplotlib, and the GPU machine has
    matplotlib for F5-TTS's utils_infer, which the comparison benchmarks import)."""
    old = [KIT / "wheels-serve", KIT / "shim", KIT / "shim-mpl"]
    problems = [f"obsolete {p.name}/" for p in old if p.exists()]
    if not check:
        for path in old:
            if path.exists():
                shutil.rmtree(path)
                step(f"removed obsolete {path.name}/")
    return problems


def kit_files() -> list[Path]:
    return sorted(p for p in KIT.rglob("*") if p.is_file() and p.name != "MANIFEST.json")


def size_mib() -> float:
    return sum(p.stat().st_size for p in KIT.rglob("*") if p.is_file()) / 1024**2


def check_metadata(wheels: Path, pins: dict[str, str]) -> None:
    """Each wheel's own name and version against its pin (a renamed file would slip through otherwise)."""
    for path in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(path) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            headers = dict(line.split(": ", 1) for line in z.read(meta).decode().splitlines() if ": " in line)
        name, version = normalise(headers.get("Name", "")), headers.get("Version", "")
        if pins.get(name) != version:
            raise SystemExit(f"{path.name}: its metadata says {name}=={version}, not the pinned {pins.get(name)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "gpu",
                        help="folder holding the flash-attn tree and make_fa_wheel.py (default ../shared/gpu)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--check", action="store_true", help="say what is missing or stale; build nothing")
    args = parser.parse_args()

    pins = read_requirements(args.requirements)
    step(f"{len(pins)} pinned packages in {args.requirements.relative_to(ROOT)}; kit at {KIT}")
    if not args.check:
        KIT.mkdir(exist_ok=True)
    problems = retire_old_layout(args.check)
    step("wheels/")
    problems += build_wheels(pins, KIT / "wheels", args.check)
    problems += copy_shared(args.shared, args.check)
    if args.check:
        for problem in problems:
            print(f"  {problem}")
        step("kit is complete" if not problems else f"{len(problems)} problem(s): run bench/device_kit.py to fix")
        return 1 if problems else 0

    step("checking each wheel's metadata against its pin")
    check_metadata(KIT / "wheels", pins)
    manifest = {
        "requirements_sha256": sha256(args.requirements),
        "target": {"python": PYTHON_VERSION, "platform": "manylinux x86_64 (glibc <= 2.39)"},
        "files": {str(p.relative_to(KIT)): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in kit_files()},
    }
    (KIT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = size_mib()
    wheels_mib = sum(p.stat().st_size for p in (KIT / "wheels").glob("*.whl")) / 1024**2
    step(f"done: {len(pins)} wheels ({wheels_mib:.1f} MiB), the flash-attn tree; .device/ is {total:.1f} MiB")
    if total > MAX_KIT_MIB:
        raise SystemExit(f".device/ is {total:.1f} MiB, over {MAX_KIT_MIB} MiB: the device tool carries 64 MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
