"""Streamed speech on /v1/audio/speech, through the real `openai` client and a real server (tiny-random).

The engine runs one text chunk per batch here (max_batch 1), and a gate can hold every batch after the
first, so the tests see what a listener gets while the rest of the text is still being synthesised.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from f5_worker.serving.api import build_app
from f5_worker.serving.stream_encode import StreamEncoder, _mp3_frame_length
from f5_worker.settings import Settings
from f5_worker.worker import Worker
from support.engine import store_voice
from support.server import serving

pytestmark = pytest.mark.slow

TEXT = " ".join(f"Sentence number {i} is here, and it carries a few more words along." for i in range(10))


class Gate:
    """Wraps the engine's batch function: records each batch's size; holds every batch after the first
    while closed."""

    def __init__(self, run_batch):
        self.run_batch, self.open, self.batches = run_batch, threading.Event(), []
        self.open.set()

    def __call__(self, chunks):
        self.batches.append(len(chunks))
        if len(self.batches) > 1:
            self.open.wait(60)
        return self.run_batch(chunks)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    volume = tmp_path_factory.mktemp("volume")
    store_voice(volume)
    worker = Worker(Settings(volume=volume, model="tiny-random", offline=True, legacy_model_dirs=(),
                             flash_attn="off", max_batch=1)).load()
    gate = Gate(worker.engine._run_batch)
    worker.engine.batcher._run_batch = gate
    with serving(build_app(worker)) as base:
        yield base, worker, gate


@pytest.fixture
def client(server):
    base, _worker, gate = server
    gate.batches.clear()
    gate.open.set()
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def whole_pcm(base: str, seed: int) -> np.ndarray:
    body = {"input": {"text": TEXT, "ref_audio": "alice", "seed": seed, "output_format": "pcm"}}
    done = httpx.post(f"{base}/runsync", json=body, timeout=120).json()
    assert done["status"] == "COMPLETED", done
    return np.frombuffer(base64.b64decode(done["output"]["audio"]), dtype="<i2")


def test_the_first_audio_arrives_before_the_rest_is_synthesised_and_the_stream_equals_the_whole(server, client):
    base, worker, gate = server
    gate.open.clear()
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alice", input=TEXT, response_format="pcm", extra_body={"seed": 7}) as response:
        pieces = response.iter_bytes()
        first = next(pieces)
        assert first and not gate.open.is_set() and len(gate.batches) == 2  # chunk 2 is held: not done yet
        gate.open.set()
        streamed = first + b"".join(pieces)
    assert len(gate.batches) >= 3  # a multi-chunk text, one chunk per batch
    samples = np.frombuffer(streamed, dtype="<i2")
    np.testing.assert_allclose(samples, whole_pcm(base, 7), atol=2)


@pytest.mark.parametrize("fmt", ["wav", "opus", "mp3"])
def test_streamed_files_decode(client, fmt):
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alice", input=TEXT[:120], response_format=fmt, extra_body={"seed": 3}) as response:
        data = response.read()
    if fmt == "mp3":  # whole MPEG frames from the first byte to the last
        offset = frames = 0
        while offset < len(data):
            length = _mp3_frame_length(data[offset:offset + 4])
            assert length, f"no MPEG frame at byte {offset}"
            offset, frames = offset + length, frames + 1
        assert offset == len(data) and frames > 10
        return
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24000 and len(samples) > 24000 * 0.5


def test_server_sent_events_have_openais_shapes(server):
    base, _worker, _gate = server
    body = {"model": "tts-1", "voice": "alice", "input": TEXT, "response_format": "pcm", "stream_format": "sse",
            "seed": 7}
    with httpx.stream("POST", f"{base}/v1/audio/speech", json=body, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"} and events[-1]["type"] == "speech.audio.done"
    assert set(events[-1]["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    np.testing.assert_allclose(np.frombuffer(pcm, dtype="<i2"), whole_pcm(base, 7), atol=2)


def test_flac_is_sent_whole_and_refused_as_events(client, server):
    base, _worker, _gate = server
    audio = client.audio.speech.create(model="tts-1", voice="alice", input="Short.", response_format="flac")
    assert sf.info(io.BytesIO(audio.content)).format == "FLAC"
    refused = httpx.post(f"{base}/v1/audio/speech", json={"model": "tts-1", "voice": "alice", "input": "Hi.",
                                                           "response_format": "flac", "stream_format": "sse"})
    assert refused.status_code == 400 and "cannot be streamed" in refused.json()["error"]["message"]
    bad = httpx.post(f"{base}/v1/audio/speech", json={"model": "tts-1", "voice": "nobody", "input": "Hi.",
                                                      "response_format": "pcm"})
    assert bad.status_code == 400 and "nobody" in bad.json()["error"]["message"]  # before any byte is streamed


def test_a_client_that_disconnects_cancels_the_chunks_not_yet_sampled(server, client):
    _base, worker, gate = server
    gate.open.clear()
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alice", input=TEXT, response_format="pcm", extra_body={"seed": 9}) as response:
        next(response.iter_bytes())
        assert len(gate.batches) == 2  # chunk 1 sent, chunk 2 held in its batch, the rest queued
    # the client has gone: the held chunk finishes and is thrown away, the queued ones are dropped unsampled
    time.sleep(0.3)  # the server notices the disconnect
    gate.open.set()
    deadline = time.monotonic() + 30
    while worker.engine.batcher.queued and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert worker.engine.batcher.queued == 0 and len(gate.batches) == 2, gate.batches


def test_the_encoder_stream_is_the_whole_files_bytes():
    t = np.arange(24000 * 2) / 24000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    encoder = StreamEncoder("wav")
    data = b"".join([encoder.feed(x[:20000]), encoder.feed(x[20000:]), encoder.finish()])
    samples, _ = sf.read(io.BytesIO(data), dtype="float32")
    np.testing.assert_allclose(samples, x, atol=1 / 32767)
    with pytest.raises(ValueError, match="cannot be streamed"):
        StreamEncoder("flac")
