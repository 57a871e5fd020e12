"""The voices and models routes through real clients: the `openai` package (speech with an OpenAI voice name on a
fresh volume, voices created and deleted, models listed), curl-like multipart uploads of every format the worker
decodes and of what it must refuse, and schemathesis fuzzing the routes' OpenAPI schema (no 5xx).

The worker is the real one (bootstrap, tiny-random engine, the tiny random Whisper from the hub cache, offline),
served by uvicorn in this process so the tests can count the ASR model's calls."""

from __future__ import annotations

import io

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from f5_worker.serving.api import build_app
from f5_worker.settings import Settings
from f5_worker.worker import Worker
from support.engine import tone, wav_bytes
from support.server import serving
from support.whisper import REPO, publish, tiny_whisper_files

pytestmark = pytest.mark.slow
SR = 24_000


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core runner: threads only wait for each other
    settings = Settings(volume=tmp_path_factory.mktemp("volume"), model="tiny-random", offline=True,
                        legacy_model_dirs=(), flash_attn="off", asr_model=REPO)
    publish(settings.hub_cache, tiny_whisper_files(str(tmp_path_factory.getbasetemp())))
    yield Worker(settings).load(warm_up=False)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def app(worker):
    return build_app(worker)


@pytest.fixture(scope="module")
def base(app):
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def encoded(samples: np.ndarray, fmt: str, subtype: str | None = None, rate: int = SR) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def stored(worker) -> list[str]:
    directory = worker.service.voices.directory
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


class TestOpenAIClient:
    def test_speech_with_an_openai_voice_name_on_a_fresh_volume(self, client, worker):
        assert stored(worker) == []
        for model in ("tts-1", "tts-1-hd"):
            response = client.audio.speech.create(model=model, voice="alloy", input="Hello from a fresh worker.",
                                                  response_format="wav")
            samples, rate = sf.read(io.BytesIO(response.content))
            assert rate == SR and len(samples) / rate > 0.5
        with pytest.raises(openai.BadRequestError, match="model 'whisper-1' is not served here"):
            client.audio.speech.create(model="whisper-1", voice="alloy", input="Hi.")

    def test_models_list(self, client):
        ids = [m.id for m in client.models.list()]
        assert ids[0] == "tiny-random" and {"tts-1", "tts-1-hd"} <= set(ids)
        assert client.models.retrieve("tts-1").owned_by == "f5-worker"
        with pytest.raises(openai.NotFoundError, match="not served here"):
            client.models.retrieve("dall-e-3")

    def test_voices_list_create_speak_delete(self, client, worker):
        listed = client.get("/audio/voices", cast_to=object)
        assert {v["id"] for v in listed["voices"]} == {"basic_ref_en", "basic_ref_zh"}
        assert all(v["text"] and not v["transcribed"] for v in listed["voices"])
        voice = client.audio.voices.create(name="narrator", audio_sample=("narrator.wav", wav_bytes(tone(3.0, 300)),
                                                                          "audio/wav"), consent="cons_unused")
        assert (voice.id, voice.name, voice.object, voice.type) == ("narrator", "narrator", "audio.voice", "audio_sample")
        again = client.get("/audio/voices/narrator", cast_to=object)
        assert again["transcribed"] is True and again["text"]  # no text given: transcribed
        speech = client.audio.speech.create(model="tts-1", voice="narrator", input="Now in my voice.",
                                            response_format="flac")
        assert sf.read(io.BytesIO(speech.content))[1] == SR
        assert client.audio.voices.delete("narrator").deleted is True
        with pytest.raises(openai.NotFoundError):
            client.audio.voices.delete("narrator")
        with pytest.raises(openai.PermissionDeniedError, match="built in"):
            client.audio.voices.delete("basic_ref_en")
        assert stored(worker) == []

    def test_multi_voice_text_on_the_speech_route(self, client):
        response = client.audio.speech.create(model="tts-1", voice="alloy", response_format="wav",
                                              input="Hello. [basic_ref_zh] 你好。 [main] Goodbye.")
        assert sf.read(io.BytesIO(response.content))[0].size > SR // 2
        with pytest.raises(openai.BadRequestError, match=r"switches to voice \[nobody\]"):
            client.audio.speech.create(model="tts-1", voice="alloy", input="Hi [nobody] there.",
                                       response_format="wav")


class TestUploads:
    @pytest.mark.parametrize("fmt, subtype, name", [
        ("WAV", "PCM_16", "v.wav"), ("WAV", "FLOAT", "v.wav"), ("FLAC", None, "v.flac"),
        ("MP3", None, "v.mp3"), ("OGG", "VORBIS", "v.ogg"), ("OGG", "OPUS", "v.opus"),
    ])
    def test_every_format_the_worker_decodes(self, base, worker, fmt, subtype, name):
        data = encoded(tone(2.5, 260), fmt, subtype)
        voice_id = f"fmt-{fmt.lower()}-{(subtype or 'x').lower()}"
        response = httpx.post(f"{base}/v1/audio/voices", data={"name": voice_id, "text": "A steady tone."},
                              files={"file": (name, data)}, timeout=120)
        assert response.status_code == 201, response.text
        assert response.json()["seconds"] == pytest.approx(2.55, abs=0.1)  # clipped as F5-TTS clips: + 50 ms
        assert httpx.delete(f"{base}/v1/audio/voices/{voice_id}").status_code == 200

    @pytest.mark.parametrize("suffix, codec", [("m4a", "aac"), ("webm", "libopus")])
    def test_formats_only_ffmpeg_decodes(self, base, tmp_path, suffix, codec):
        import shutil
        import subprocess

        ffmpeg = shutil.which("ffmpeg")
        if not ffmpeg:
            pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
        source, target = tmp_path / "in.wav", tmp_path / f"out.{suffix}"
        source.write_bytes(wav_bytes(tone(2.5, 260)))
        subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(source), "-c:a", codec, str(target)], check=True)
        response = httpx.post(f"{base}/v1/audio/voices", data={"name": f"ff-{suffix}", "text": "A steady tone."},
                              files={"file": (target.name, target.read_bytes())}, timeout=120)
        assert response.status_code == 201, response.text
        assert httpx.delete(f"{base}/v1/audio/voices/ff-{suffix}").status_code == 200

    def test_a_60_s_reference_is_clipped(self, base):
        long = np.concatenate([np.concatenate([tone(1.5, 250), np.zeros(int(1.2 * SR), np.float32)])] * 23)[:60 * SR]
        response = httpx.post(f"{base}/v1/audio/voices", data={"name": "long", "text": "Many words."},
                              files={"file": ("long.wav", wav_bytes(long))}, timeout=120)
        assert response.status_code == 201, response.text
        assert 6 < response.json()["seconds"] <= 12.05
        httpx.delete(f"{base}/v1/audio/voices/long")

    @pytest.mark.parametrize("fields, files, status, message", [
        ({"name": "bad"}, {"file": ("x.wav", b"RIFF not really a wave file" * 10)}, 400, "not audio we can decode"),
        ({"name": "empty"}, {"file": ("x.wav", b"")}, 400, "empty"),
        ({"name": "../escape"}, {"file": ("x.wav", wav_bytes(tone(1.0)))}, 400, "cannot name a voice"),
        ({"name": ".hidden"}, {"file": ("x.wav", wav_bytes(tone(1.0)))}, 400, "cannot name a voice"),
        ({"name": "too-long"}, {"file": ("x.wav", wav_bytes(tone(61.0)))}, 400, "over the limit of 60 s"),
        ({"name": "silent"}, {"file": ("x.wav", wav_bytes(np.zeros(SR, np.float32)))}, 400, "silent"),
        ({"name": "basic_ref_en"}, {"file": ("x.wav", wav_bytes(tone(1.0)))}, 409, "built in"),
        ({}, {"file": ("x.wav", wav_bytes(tone(1.0)))}, 400, "name is required"),
        ({"name": "nofile"}, {}, 400, "file is required"),
        ({"name": "prompted", "type": "prompt"}, {"file": ("x.wav", wav_bytes(tone(1.0)))}, 400, "not supported"),
    ])
    def test_what_is_refused_is_a_clear_4xx_and_nothing_is_stored(self, base, worker, fields, files, status, message):
        before = stored(worker)
        response = httpx.post(f"{base}/v1/audio/voices", data=fields, files=files or {"other": ("x", b"x")},
                              timeout=120)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]["message"]
        assert stored(worker) == before

    def test_a_body_over_the_limit_is_refused_before_it_is_parsed(self, base, worker):
        limit = worker.settings.max_ref_bytes
        response = httpx.post(f"{base}/v1/audio/voices", data={"name": "huge"},
                              files={"file": ("x.wav", b"\0" * (limit + 300 * 1024))}, timeout=120)
        assert response.status_code == 413 and "F5_WORKER_MAX_REF_BYTES" in response.json()["error"]["message"]

    def test_json_instead_of_multipart(self, base):
        response = httpx.post(f"{base}/v1/audio/voices", json={"name": "x"})
        assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]["message"]

    def test_the_same_reference_is_transcribed_once_across_jobs(self, base, worker):
        import base64

        ref = base64.b64encode(wav_bytes(tone(2.0, 777))).decode()
        before = worker.service.transcriber.calls
        for seed in (1, 2):
            done = httpx.post(f"{base}/runsync", json={"input": {"text": "No ref_text here.", "ref_audio": ref,
                                                                 "nfe_step": 4, "seed": seed}}, timeout=120).json()
            assert done["status"] == "COMPLETED", done
        assert worker.service.transcriber.calls == before + 1


def test_schemathesis_finds_no_server_error_in_the_new_routes(app):
    """Cases generated from the app's own OpenAPI schema (names, ids, uploads of random bytes): 4xx, never 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=r"^/v1/(models|audio/voices)")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("GET", "/v1/models"), ("GET", "/v1/models/{model_id}"), ("GET", "/v1/audio/voices"),
        ("POST", "/v1/audio/voices"), ("GET", "/v1/audio/voices/{voice_id}"), ("DELETE", "/v1/audio/voices/{voice_id}")}
    failures = []
    for operation in operations:
        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call()
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code, response.text[:300]))

        fuzz()
    assert not failures, failures
