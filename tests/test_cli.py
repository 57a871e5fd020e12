"""The CLI contract other tools rely on."""

import json
import subprocess
import sys

import pytest

from f5_worker.cli import main


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "f5_worker", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"torch_version": "2.8.0+cu128", "torch_cuda": "12.8", "cxx11abi": True, "python": "3.12",
                                "platform": "linux_x86_64", "glibc": "2.35", "compute_capability": "9.0", "driver": "570.124.06"}))
    return path


def test_resolve_json_contract(env_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("F5_WORKER_VOLUME", str(tmp_path / "vol"))
    assert main(["flash-attn", "resolve", "--env", str(env_file), "--version", ">=2.8,<2.8.3.post2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["status"] == "ok" and plan["reason"] is None
    first = plan["candidates"][0]
    assert first == {"filename": "flash_attn-2.8.3.post1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
                     "url": "https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3.post1/"
                            "flash_attn-2.8.3.post1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
                     "source": "upstream", "version": "2.8.3.post1", "sha256": None}


def test_resolve_unsupported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("F5_WORKER_VOLUME", str(tmp_path / "vol"))
    (tmp_path / "cpu.json").write_text(json.dumps({"python": "3.12", "platform": "linux_x86_64"}))
    assert main(["flash-attn", "resolve", "--env", str(tmp_path / "cpu.json"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["status"] == "unsupported" and plan["candidates"] == [] and "no CUDA GPU" in plan["reason"]


@pytest.mark.parametrize("args, message", [
    (["flash-attn", "resolve", "--env", "/nonexistent.json"], "cannot read --env /nonexistent.json"),
    (["flash-attn", "resolve", "--version", "latest"], "version request 'latest' is not valid"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path):
    proc = run(*args, env={"PATH": "/usr/bin:/bin", "F5_WORKER_VOLUME": str(tmp_path / "vol")})
    assert proc.returncode == 2
    assert proc.stderr.startswith("f5-worker: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_init_on_this_cpu_machine_reports_sdpa_and_keeps_the_report(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "F5_WORKER_VOLUME": str(tmp_path / "vol"), "F5_WORKER_OFFLINE": "true",
           "F5_WORKER_LEGACY_MODEL_DIRS": ""}
    proc = run("init", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["flash_attn"]["backend"] == "sdpa"
    assert report["flash_attn"]["reason"] == "no CUDA GPU detected; flash-attn needs one"
    assert report["fingerprint"]["compute_capability"] is None
    # Offline with an empty cache: each model file is reported missing, with where it was looked for.
    assert report["models"]["ok"] is False
    assert "F5TTS_v1_Base/model_1250000.safetensors" in report["models"]["error"]
    assert str(tmp_path / "vol" / "huggingface-cache" / "hub") in report["models"]["error"]
    kept = json.loads((tmp_path / "vol" / "f5-worker" / "reports" / "last-bootstrap.json").read_text())
    assert kept["flash_attn"]["reason"] == report["flash_attn"]["reason"]
    # Structured logs on stderr name each phase and its duration.
    phases = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(p.get("phase") == "flash_attn.resolve" and "duration_ms" in p for p in phases)


def test_doctor_text(tmp_path):
    proc = run("doctor", env={"PATH": "/usr/bin:/bin", "F5_WORKER_VOLUME": str(tmp_path / "vol")})
    assert proc.returncode == 0, proc.stderr
    assert "runtime key:" in proc.stdout and "a start would activate: nothing" in proc.stdout
