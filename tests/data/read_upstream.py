"""Read flash-attn's build facts from upstream's own files, at each release tag: writes upstream_workflows.json.

    python tests/data/read_upstream.py GIT_DIR [--sdist VERSION=PATH.tar.gz ...] > tests/data/upstream_workflows.json

GIT_DIR is a clone (bare is fine) of https://github.com/Dao-AILab/flash-attention with its tags
(the ``fetch`` tool's snapshot: /work/.mirror/Dao-AILab+flash-attention/repo). For each tag from
v2.5.0 on it reads, with ``git show TAG:PATH``:

- ``.github/workflows/publish.yml``: the ``build_wheels`` job's matrix (runner OS, Python, torch,
  CUDA toolkit, C++ ABI, excludes, includes) and how its ``tmpname`` writes the ``cuXX`` label
  (``MATRIX_CUDA_VERSION``: major and minor, ``WHEEL_CUDA_VERSION``: major only);
- ``setup.py``: ``get_wheel_url()``'s rule (which CUDA it asks for per torch CUDA major, the label's
  form), ``get_platform()``'s Linux tag, ``python_requires``.

A release published on PyPI after the newest tag has no tag to read: ``--sdist VERSION=FILE`` reads
``setup.py`` from its sdist instead (an sdist carries no workflow file).

tests/flash_attn/test_releases.py holds ``f5_worker.flash_attn.releases`` to this file, and re-reads
the tags itself when ``F5_TEST_FLASH_ATTN_GIT`` names such a clone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml
from packaging.version import Version

FIRST = Version("2.5.0")
WORKFLOW = ".github/workflows/publish.yml"
SETUP = "setup.py"


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True).stdout


def tags(git_dir: str) -> list[str]:
    found = []
    for tag in git(git_dir, "tag", "--list", "v*").split():
        try:
            if Version(tag[1:]) >= FIRST:
                found.append(tag)
        except ValueError:
            continue
    return sorted(found, key=lambda t: Version(t[1:]))


def read_workflow(text: str) -> dict:
    """The build_wheels job's matrix, as the workflow writes it."""
    jobs = yaml.safe_load(text)["jobs"]
    job = jobs["build_wheels"]
    matrix = job["strategy"]["matrix"]
    known = {"os", "python-version", "torch-version", "cuda-version", "cxx11_abi", "exclude", "include"}
    unknown = set(matrix) - known
    if unknown:
        raise ValueError(f"matrix has keys this reader does not know: {sorted(unknown)}")
    if "tmpname=cu${WHEEL_CUDA_VERSION}" in text:
        label = "major"
    elif "tmpname=cu${MATRIX_CUDA_VERSION}" in text:
        label = "major.minor"
    else:
        raise ValueError("no tmpname=cu${...} line: the wheel label rule changed")
    if "awk -F \\. {'print $1 $2'}" not in text:
        raise ValueError("MATRIX_CUDA_VERSION is no longer major+minor")
    return {
        "path": WORKFLOW,
        "runs_on": job["runs-on"],
        "os": [str(v) for v in matrix["os"]],
        "python": [str(v) for v in matrix["python-version"]],
        "torch": [str(v) for v in matrix["torch-version"]],
        "cuda": [str(v) for v in matrix["cuda-version"]],
        "cxx11_abi": [str(v) for v in matrix["cxx11_abi"]],
        "exclude": [{k: str(v) for k, v in rule.items()} for rule in matrix.get("exclude") or []],
        "include": [{k: str(v) for k, v in rule.items()} for rule in matrix.get("include") or []],
        "label": label,
    }


_TERNARY = re.compile(r'parse\("([\d.]+)"\) if torch_cuda_version\.major == (\d+) else parse\("([\d.]+)"\)')
_BRANCH = re.compile(r'(?:el)?if torch_cuda_version\.major == (\d+):\s*torch_cuda_version = parse\("([\d.]+)"\)')
_ELSE = re.compile(r'else:\s*torch_cuda_version = parse\("([\d.]+)"\)')


def read_setup(text: str) -> dict:
    """``get_wheel_url()``'s naming rule for CUDA builds, and the Linux platform tag."""
    body = text[text.index("def get_wheel_url"):]
    body = body[:body.index("return wheel_url")]
    code = "\n".join(line for line in body.splitlines() if not line.strip().startswith("#"))
    cuda: dict[str, str] = {}
    if m := _TERNARY.search(code):
        cuda = {m.group(2): m.group(1), "other": m.group(3)}
    else:
        cuda = {major: version for major, version in _BRANCH.findall(code)}
        if m := _ELSE.search(code):
            cuda["other"] = m.group(1)
    if not cuda:
        raise ValueError("get_wheel_url's CUDA rule has a form this reader does not know")
    if 'cuda_version = f"{torch_cuda_version.major}{torch_cuda_version.minor}"' in code:
        label = "major.minor"
    elif 'cuda_version = f"{torch_cuda_version.major}"' in code:
        label = "major"
    else:
        raise ValueError("get_wheel_url's label form is unknown")
    platform_body = text[text.index("def get_platform"):]
    platform_body = platform_body[:platform_body.index("elif")]
    if "platform.uname().machine" in platform_body:
        linux = "linux_{platform.uname().machine}"
    elif '"linux_x86_64"' in platform_body:
        linux = "linux_x86_64"
    else:
        raise ValueError("get_platform's Linux tag is unknown")
    requires = re.search(r'python_requires="([^"]+)"', text)
    return {"path": SETUP, "cuda": cuda, "label": label, "linux_platform": linux,
            "python_requires": requires.group(1) if requires else None}


def read_tag(git_dir: str, tag: str) -> dict:
    commit = git(git_dir, "rev-list", "-n", "1", tag, "--").strip()
    date = git(git_dir, "log", "-1", "--format=%cs", commit, "--").strip()
    return {
        "version": tag[1:],
        "tag": tag,
        "commit": commit,
        "date": date,
        "workflow": read_workflow(git(git_dir, "show", f"{commit}:{WORKFLOW}")),
        "setup": read_setup(git(git_dir, "show", f"{commit}:{SETUP}")),
    }


def read_sdist(version: str, path: Path) -> dict:
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        setup = tar.extractfile(f"flash_attn-{version}/{SETUP}").read().decode()
        members = tar.getnames()
    if any(".github/" in name for name in members):
        raise ValueError(f"{path.name} carries workflow files: read them too")
    return {
        "version": version,
        "tag": None,
        "sdist": {"file": path.name, "sha256": hashlib.sha256(data).hexdigest()},
        "workflow": None,
        "setup": read_setup(setup),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("git_dir")
    parser.add_argument("--sdist", action="append", default=[], metavar="VERSION=PATH")
    args = parser.parse_args(argv)
    releases = [read_tag(args.git_dir, tag) for tag in tags(args.git_dir)]
    for item in args.sdist:
        version, _, path = item.partition("=")
        releases.append(read_sdist(version, Path(path)))
    json.dump(releases, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
