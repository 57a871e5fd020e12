"""The README's first command, for real: `f5-worker serve` in its own process (tiny-random, offline),
driven over 127.0.0.1 by the OpenAI client and by RunPod-style job requests."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import openai
import pytest
import soundfile as sf

from support.engine import store_voice, tone, wav_bytes

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    volume = tmp_path_factory.mktemp("volume")
    store_voice(volume)
    port = free_port()
    env = {**os.environ, "F5_WORKER_VOLUME": str(volume), "F5_WORKER_MODEL": "tiny-random",
           "F5_WORKER_OFFLINE": "true", "F5_WORKER_LEGACY_MODEL_DIRS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "f5_worker", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                health = json.load(response)
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not come up within 240 s")
    yield base, health
    proc.terminate()
    proc.wait(timeout=30)


def test_health_reports_the_bootstrap_verdict(server):
    base, health = server
    assert health["status"] == "ready"
    assert health["engine"]["model"] == "tiny-random" and health["engine"]["random_weights"] is True
    deadline = time.monotonic() + 60
    while health["pending"] and time.monotonic() < deadline:  # flash-attn is decided in the background
        time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            health = json.load(response)
    assert health["pending"] == []
    assert health["flash_attn"]["backend"] == "sdpa" and "no CUDA GPU" in health["flash_attn"]["reason"]
    assert health["attention"] == {"single": "sdpa", "batch": "sdpa", "single_why": health["flash_attn"]["reason"],
                                   "batch_why": health["flash_attn"]["reason"]}


def test_openai_client_speech(server):
    base, _ = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
    response = client.audio.speech.create(model="tts-1", voice="alice", input="Hello from the OpenAI client.",
                                          response_format="wav")
    samples, rate = sf.read(io.BytesIO(response.content))
    assert rate == 24000 and len(samples) / rate > 0.5
    with pytest.raises(openai.BadRequestError, match="voice 'nobody' is not stored"):
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")


def test_runsync_job_and_failed_job(server):
    base, _ = server
    ref = base64.b64encode(wav_bytes(tone(2.0))).decode()
    done = post(f"{base}/runsync", {"input": {"text": "A job through RunPod's local API.", "ref_audio": ref,
                                              "ref_text": "A steady tone.", "nfe_step": 4, "output_format": "flac"}})
    assert done["status"] == "COMPLETED", done
    samples, rate = sf.read(io.BytesIO(base64.b64decode(done["output"]["audio"])))
    assert rate == 24000 and abs(len(samples) / rate - done["output"]["duration_s"]) < 0.05
    failed = post(f"{base}/runsync", {"input": {"text": "x", "ref_audio": "../../etc/passwd", "ref_text": "y"}})
    assert failed["status"] == "FAILED" and "ref_audio" in failed["error"]
    # and it still serves
    assert post(f"{base}/runsync", {"input": {"text": "Still here.", "ref_audio": "alice", "nfe_step": 4}})["status"] == "COMPLETED"
