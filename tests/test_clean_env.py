"""The image's recipe without Docker: the project's wheel in a fresh virtual environment, installed the
way Dockerfile.runpod installs it, then the entrypoint's bootstrap on an empty volume and on the warm one,
and RunPod's own local test of test_input.json through `f5-worker runpod` (tiny-random)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1200, **kwargs)
    assert proc.returncode == 0, f"{command[:4]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("clean-env")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(REPO)])
    (wheel,) = (work / "dist").glob("f5_worker-*.whl")
    run([sys.executable, "-m", "venv", str(work / "venv")])
    pip = [str(work / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    # As Dockerfile.runpod: torch first (pinned), the project's wheel with its inference dependencies,
    # then F5-TTS itself without its training stack.
    run(pip + ["install", "-r", str(REPO / "requirements" / "local-torch.txt")])
    run(pip + ["install", "-c", str(REPO / "requirements" / "local-torch.txt"), str(wheel)])
    run(pip + ["install", "--no-deps", "-r", str(REPO / "requirements" / "f5-tts.txt")])
    return work / "venv"


def worker_env(volume: Path) -> dict:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return keep | {"F5_WORKER_VOLUME": str(volume), "F5_WORKER_MODEL": "tiny-random", "F5_WORKER_OFFLINE": "true",
                   "F5_WORKER_LEGACY_MODEL_DIRS": ""}


def test_bootstrap_cold_then_warm_and_the_test_input_job(venv, tmp_path):
    volume = tmp_path / "volume"
    f5_worker = str(venv / "bin" / "f5-worker")
    cold = json.loads(run([f5_worker, "init", "--json"], env=worker_env(volume), cwd=tmp_path).stdout)
    assert cold["volume"] == str(volume) and cold["warnings"] == []
    assert cold["flash_attn"]["backend"] == "sdpa"  # no GPU in CI: the stated reason says so
    assert (volume / "f5-worker" / "reports" / "last-bootstrap.json").is_file()
    warm = json.loads(run([f5_worker, "init", "--json"], env=worker_env(volume), cwd=tmp_path).stdout)
    assert warm["flash_attn"]["reason"] == cold["flash_attn"]["reason"] == "no CUDA GPU detected; flash-attn needs one"

    # RunPod's SDK runs test_input.json from the working directory when not deployed, then exits.
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    shutil.copy(REPO / "test_input.json", job_dir / "test_input.json")
    proc = run([f5_worker, "runpod"], env=worker_env(volume), cwd=job_dir)
    output = proc.stdout + proc.stderr
    assert "completed successfully" in output, output[-3000:]
    assert "'audio':" in output or '"audio":' in output
