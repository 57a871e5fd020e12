"""One pipeline for every output (issue 13): a job is prepared once (references, their words, [voice] segments,
the seed) and both outputs consume it; references without words are transcribed once; voices are managed by
the same actions on the RunPod handler and the local API."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

from f5_worker.asr import Transcriber
from f5_worker.serving.refclip import LongSilenceFilter, remove_long_silences
from f5_worker.serving.request import Limits
from f5_worker.serving.service import Job, Service, ServiceConfig
from f5_worker.settings import Settings
from support.engine import tiny_engine, tone, wav_bytes
from support.whisper import REPO, publish, tiny_whisper_files

SR = 24_000
REF = base64.b64encode(wav_bytes(tone(2.0))).decode()


def job(**fields) -> dict:
    return {"text": "Hello there, this is a test.", "ref_audio": REF, "ref_text": "A steady tone.",
            "nfe_step": 4, "seed": 1} | fields


def samples_of(result: dict) -> np.ndarray:
    return sf.read(io.BytesIO(base64.b64decode(result["audio"])), dtype="float32")[0]


@pytest.fixture(scope="module")
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core runner: threads only wait for each other
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, one_thread):
    pytest.importorskip("transformers")
    settings = Settings(volume=tmp_path_factory.mktemp("volume"), offline=True, legacy_model_dirs=(), asr_model=REPO)
    publish(settings.hub_cache, tiny_whisper_files(str(tmp_path_factory.getbasetemp())))
    return settings


@pytest.fixture(scope="module")
def service(settings):
    return Service(tiny_engine(), ServiceConfig.from_settings(settings, transcriber=Transcriber(settings)))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Transcription off, no bucket."""
    return Service(tiny_engine(), ServiceConfig(voices_dir=tmp_path_factory.mktemp("voices")))


class TestOnePipeline:
    def test_prepare_decides_once_what_both_outputs_use(self, plain):
        prepared = plain.prepare(job(seed=None))
        assert isinstance(prepared, Job) and 0 <= prepared.params.seed < 2**31
        whole = plain.render(prepared)[0]
        pieces = [base64.b64decode(p["audio"]) for p in plain.stream(job(seed=prepared.params.seed))]
        got = np.concatenate([sf.read(io.BytesIO(p), dtype="float32")[0] for p in pieces])
        np.testing.assert_allclose(got, sf.read(io.BytesIO(whole), dtype="float32")[0], atol=1e-4)

    def test_a_streamed_job_removes_silence_too(self, plain):
        streamed = [p for p in plain.stream(job(remove_silence=True, seed=3))]
        whole = plain.run(job(remove_silence=True, seed=3))
        assert "error" not in whole and all("error" not in p for p in streamed)
        total = sum(len(samples_of(p)) for p in streamed)
        assert abs(total - len(samples_of(whole))) <= SR // 2  # at most 0.5 s per pause at a piece boundary

    def test_a_streamed_job_is_delivered_to_the_bucket_when_asked(self, tmp_path):
        uploads = []
        service = Service(tiny_engine(), ServiceConfig(
            voices_dir=tmp_path, upload=lambda name, data: uploads.append(data) or f"https://bucket/{name}"))
        pieces = list(service.stream(job(delivery="s3")))
        assert pieces and all(p["audio_url"].startswith("https://bucket/") and "audio" not in p for p in pieces)
        assert len(uploads) == len(pieces)

    def test_without_a_bucket_s3_is_refused_in_both(self, plain):
        assert "needs a bucket" in plain.run(job(delivery="s3"))["error"]
        assert "needs a bucket" in list(plain.stream(job(delivery="s3")))[0]["error"]

    def test_the_bucket_comes_from_the_settings(self, tmp_path):
        assert ServiceConfig.from_settings(Settings(volume=tmp_path)).upload is None
        settings = Settings(volume=tmp_path, bucket_endpoint_url="https://s3.example", bucket_access_key_id="id",
                            bucket_secret_access_key="secret")
        assert callable(ServiceConfig.from_settings(settings).upload)


class TestSilence:
    def test_the_streaming_filter_matches_the_whole_within_half_a_second_a_pause(self):
        def loud(s):
            return (0.2 * np.sin(2 * np.pi * 200 * np.arange(int(s * SR)) / SR)).astype(np.float32)

        x = np.concatenate([loud(1), np.zeros(3 * SR, np.float32), loud(1), np.zeros(2 * SR, np.float32), loud(0.5),
                            np.zeros(int(1.5 * SR), np.float32)])
        whole = remove_long_silences(x, SR)
        for size in (SR // 3, SR, 4 * SR):
            silence = LongSilenceFilter(SR)
            out = [silence.feed(x[i:i + size]) for i in range(0, len(x), size)] + [silence.finish()]
            assert abs(sum(map(len, out)) - len(whole)) <= SR, size
        assert len(whole) / SR == pytest.approx(1 + 1 + 1 + 1 + 0.5 + 0.5, abs=0.05)


class TestTranscription:
    def test_a_job_without_ref_text_is_transcribed_once_then_from_the_cache(self, service):
        ref = base64.b64encode(wav_bytes(tone(2.0, 300))).decode()
        before = service.transcriber.calls
        first = service.run(job(ref_audio=ref, ref_text=None))
        second = service.run(job(ref_audio=ref, ref_text=None, seed=2))
        assert "error" not in first and "error" not in second, (first, second)
        assert service.transcriber.calls == before + 1
        assert first["transcripts"][0]["cached"] is False and second["transcripts"][0]["cached"] is True
        assert first["transcripts"][0]["text"] == second["transcripts"][0]["text"]
        assert "transcribed by f5-worker-tests/tiny-whisper" in first["note"] and "looks wrong" in first["note"]

    def test_the_clipped_reference_is_what_is_transcribed(self, service):
        """A 60 s reference: F5-TTS clips it to ~12 s, and transcribes the clip (its words match its audio)."""
        long = np.concatenate([np.concatenate([tone(1.5, 250), np.zeros(int(1.2 * SR), np.float32)])] * 22)[:60 * SR]
        prepared = service.prepare(job(ref_audio=base64.b64encode(wav_bytes(long)).decode(), ref_text=None))
        reference = prepared.segments[0].reference
        assert reference.seconds <= 12.1
        key = service.transcriber.key(reference.audio.numpy()[0])
        assert (service.transcriber.cache_dir / f"{key}.json").is_file()

    def test_a_stored_voice_without_text_is_transcribed(self, service):
        service.voices.directory.mkdir(parents=True, exist_ok=True)
        (service.voices.directory / "mute.wav").write_bytes(wav_bytes(tone(2.0, 410)))
        result = service.run(job(ref_audio="mute", ref_text=None))
        assert "error" not in result and result["transcripts"][0]["voice"] == "main"

    def test_off_keeps_ref_text_required(self, plain):
        assert plain.run(job(ref_text=None))["error"].startswith("ref_text is required")


class TestMultiVoice:
    def test_tags_switch_voices_and_segments_are_cross_faded(self, plain):
        prepared = plain.prepare(job(text="Hello there. [basic_ref_zh] 你好。 [main] Back to me."))
        assert [(s.voice, s.text) for s in prepared.segments] == [
            ("main", "Hello there."), ("basic_ref_zh", "你好。"), ("main", "Back to me.")]
        assert prepared.segments[0].reference is prepared.segments[2].reference  # prepared once
        result = plain.run(job(text="Hello there. [basic_ref_zh] 你好。 [main] Back to me."))
        assert result["voices"] == ["main", "basic_ref_zh", "main"]
        # each segment is what that voice says alone (segment k samples with seed + k * 7919); joined with
        # the usual 0.15 s cross-fade, the whole is two fades shorter than the three
        alone = [plain.run(job(text="Hello there.", seed=1)),
                 plain.run(job(text="你好。", ref_audio="basic_ref_zh", ref_text=None, seed=1 + 7919)),
                 plain.run(job(text="Back to me.", seed=1 + 2 * 7919))]
        fade = int(0.15 * SR)
        assert len(samples_of(result)) == sum(len(samples_of(r)) for r in alone) - 2 * fade

    def test_an_unknown_voice_is_a_clear_error(self, plain):
        result = plain.run(job(text="Hi. [bob] Hello."))
        assert result["error"].startswith("text switches to voice [bob], which is not a voice on this worker; "
                                          "known voices: basic_ref_en, basic_ref_zh")

    def test_only_tags_is_no_text(self, plain):
        assert "no words outside its [voice] tags" in plain.run(job(text="[main] [basic_ref_en]"))["error"]


class TestVoiceActions:
    def test_list_create_use_delete(self, service):
        listed = service.run({"action": "voices.list"})
        assert {"basic_ref_en", "basic_ref_zh"} <= {v["id"] for v in listed["voices"]}
        created = service.run({"action": "voices.create", "name": "handler-voice",
                               "audio": base64.b64encode(wav_bytes(tone(3.0, 500))).decode(), "text": "A tone."})
        voice = created["voice"]
        assert voice.pop("created_at") > 1.7e9
        assert voice == {"id": "handler-voice", "name": "handler-voice", "object": "audio.voice", "type": "audio_sample",
                         "builtin": False, "text": "A tone.", "transcribed": False, "seconds": 3.05}
        assert "audio" in service.run(job(ref_audio="handler-voice", ref_text=None))
        assert service.run({"action": "voices.delete", "name": "handler-voice"}) == {"deleted": "handler-voice"}
        assert "not stored" in service.run(job(ref_audio="handler-voice"))["error"]

    def test_create_without_text_transcribes(self, service):
        created = service.run({"action": "voices.create", "name": "heard",
                               "audio": "data:audio/wav;base64," + base64.b64encode(wav_bytes(tone(2.0, 610))).decode()})
        assert created["voice"]["transcribed"] is True and created["voice"]["text"]
        assert "looks wrong" in created["voice"]["note"]
        service.voices.delete("heard")

    def test_streamed_handler_answers_actions_in_one_piece(self, service):
        assert [p.keys() >= {"voices"} for p in service.stream({"action": "voices.list"})] == [True]

    @pytest.mark.parametrize("payload, message", [
        ({"action": "voices.fly"}, "action must be one of speech, voices.list"),
        ({"action": "voices.create", "name": "../x", "audio": REF}, "cannot name a voice"),
        ({"action": "voices.create", "name": "x", "audio": "alice"}, "audio must be base64 audio"),
        ({"action": "voices.create", "name": "x", "audio": base64.b64encode(b"no audio here" * 20).decode()},
         "not audio we can decode"),
        ({"action": "voices.create", "name": "basic_ref_en", "audio": REF}, "built in"),
        ({"action": "voices.delete", "name": "basic_ref_zh"}, "built in and cannot be deleted"),
        ({"action": "voices.delete", "name": "nobody"}, "not stored"),
        ({"action": "voices.list", "extra": 1}, "unknown field 'extra'"),
    ])
    def test_bad_actions_are_clear_errors_and_store_nothing(self, service, payload, message):
        before = sorted(p.name for p in service.voices.directory.iterdir()) if service.voices.directory.exists() else []
        result = service.run(payload)
        assert set(result) == {"error"} and message in result["error"], result
        after = sorted(p.name for p in service.voices.directory.iterdir()) if service.voices.directory.exists() else []
        assert after == before


def test_limits_come_from_the_settings(tmp_path):
    settings = Settings(volume=tmp_path, max_text_chars=100, max_ref_seconds=5.0)
    assert Limits.from_settings(settings) == Limits(max_text_chars=100, max_ref_seconds=5.0)
