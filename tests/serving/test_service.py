"""Jobs through the service with the tiny-random engine: formats, streaming, seeds, bad input, concurrency."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from f5_worker.serving.service import INLINE_MAX_BYTES, Service, ServiceConfig
from support.engine import tiny_engine, tone, wav_bytes

REF = base64.b64encode(wav_bytes(tone(2.0))).decode()
LONG = " ".join(f"This is sentence {i}, which goes on for a little while." for i in range(10))


def job(**fields) -> dict:
    return {"text": "Hello there, this is a test.", "ref_audio": REF, "ref_text": "A steady tone.",
            "nfe_step": 4, "seed": 1} | fields


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    path = tmp_path_factory.mktemp("voices")
    (path / "alice.wav").write_bytes(wav_bytes(tone(2.0, 330)))
    (path / "alice.txt").write_text("Alice says hello.")
    return path


@pytest.fixture(scope="module")
def service(voices):
    return Service(tiny_engine(), ServiceConfig(voices_dir=voices))


def decode(result: dict):
    data = base64.b64decode(result["audio"])
    if result["format"] == "pcm":
        return np.frombuffer(data, dtype="<i2"), result["sample_rate"]
    samples, rate = sf.read(io.BytesIO(data))
    return samples, rate


class TestOutput:
    @pytest.mark.parametrize("fmt, rate", [("wav", 24000), ("flac", 24000), ("mp3", 24000), ("opus", 48000),
                                           ("pcm", 24000), ("wav", 16000)])
    def test_each_format_decodes_to_the_stated_duration_and_rate(self, service, fmt, rate):
        result = service.run(job(output_format=fmt, sample_rate=rate))
        assert "error" not in result, result
        samples, decoded_rate = decode(result)
        assert decoded_rate == rate
        # mp3/opus encoders pad a few ms; the duration is the model's output length
        assert abs(len(samples) / rate - result["duration_s"]) < 0.1
        assert result["model"] == "tiny-random" and "random weights" in result["note"]

    def test_fixed_seed_repeats_byte_for_byte(self, service):
        assert service.run(job(seed=42))["audio"] == service.run(job(seed=42))["audio"]
        assert service.run(job(seed=42))["audio"] != service.run(job(seed=43))["audio"]

    def test_a_seed_is_chosen_and_reported_when_none_is_given(self, service):
        result = service.run(job(seed=None))
        again = service.run(job(seed=result["seed"]))
        assert again["audio"] == result["audio"]

    def test_stored_voice_with_its_words(self, service):
        result = service.run(job(ref_audio="alice", ref_text=None))
        assert "error" not in result, result


class TestStreaming:
    def test_pieces_arrive_in_order_and_add_up_to_the_whole(self, service):
        pieces = list(service.stream(job(text=LONG, output_format="wav")))
        assert len(pieces) > 2 and [p["index"] for p in pieces] == list(range(len(pieces)))
        assert all(len(p["audio"]) < 1024 * 1024 for p in pieces)  # RunPod's stream limit
        whole = service.run(job(text=LONG, output_format="wav"))
        total = sum(len(decode(p)[0]) for p in pieces)
        assert abs(total / 24000 - whole["duration_s"]) < 0.01

    def test_bad_input_streams_one_error(self, service):
        assert list(service.stream(job(text=""))) == [{"error": list(service.stream(job(text="")))[0]["error"]}]


class TestBadInput:
    @pytest.mark.parametrize("fields, message", [
        ({"text": None}, "text"),
        ({"text": ""}, "text"),
        ({"text": "x" * 5001}, "5000"),
        ({"ref_audio": "!!!not base64!!!"}, "ref_audio"),
        ({"ref_audio": base64.b64encode(b"this is not audio at all" * 10).decode()}, "audio"),
        ({"ref_audio": base64.b64encode(wav_bytes(np.zeros(0, np.float32))).decode()}, "no samples"),
        ({"ref_audio": base64.b64encode(wav_bytes(np.zeros(100, np.float32)) + bytes(2000)).decode()}, "audio"),
        ({"ref_audio": base64.b64encode(wav_bytes(tone(61.0))).decode()}, "60"),
        ({"ref_audio": "bob"}, "voice 'bob' is not stored"),
        ({"ref_audio": "../alice"}, "ref_audio"),
        ({"ref_audio": "http://example.com/a.wav"}, "http"),
        ({"ref_audio": "https://10.0.0.5/a.wav"}, "private"),
        ({"ref_text": None}, "ref_text is required"),
        ({"output_format": "aiff"}, "output_format"),
        ({"nfe_step": 500}, "nfe_step must be between 4 and 128, got 500"),
        ({"speed": 0}, "speed"),
        ({"delivery": "s3"}, "needs a bucket"),
        ({"surprise": 1}, "surprise"),
    ])
    def test_clear_error_and_the_worker_keeps_serving(self, service, fields, message):
        result = service.run(job(**fields))
        assert set(result) == {"error"} and message in result["error"], result
        assert "Traceback" not in result["error"]
        assert "audio" in service.run(job())

    def test_not_a_dict(self, service):
        assert "error" in service.run(["text"])
        assert "error" in service.run(None)


class TestDelivery:
    def test_s3_when_asked_and_when_too_large_for_inline(self, voices, monkeypatch):
        uploads = []
        service = Service(tiny_engine(), ServiceConfig(voices_dir=voices,
                                                       upload=lambda name, data: uploads.append(name) or f"https://bucket/{name}"))
        assert service.run(job(delivery="s3"))["audio_url"].startswith("https://bucket/")
        monkeypatch.setattr("f5_worker.serving.service.INLINE_MAX_BYTES", 1000)
        assert "audio_url" in service.run(job())
        assert len(uploads) == 2

    def test_too_large_without_bucket_is_a_clear_error(self, service, monkeypatch):
        monkeypatch.setattr("f5_worker.serving.service.INLINE_MAX_BYTES", 1000)
        assert "fits inline" in service.run(job())["error"]
        assert INLINE_MAX_BYTES > 1000


def test_concurrent_requests_all_answer(service):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: service.run(job(seed=i, text=f"Request number {i}.")), range(8)))
    assert all("audio" in r for r in results)
    assert len({r["audio"] for r in results}) == 8
