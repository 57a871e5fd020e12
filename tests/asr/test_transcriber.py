"""Transcription of references sent without their words: a tiny random Whisper, saved in the Hugging Face format
and put in the hub cache, loaded offline through the worker's own path (models.ensure_models, then transformers'
ASR pipeline) -- the path openai/whisper-large-v3-turbo takes on RunPod."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from f5_worker.asr import Transcriber, judge
from f5_worker.serving.errors import TranscriptionUnavailable
from f5_worker.settings import Settings
from support.engine import tone
from support.whisper import REPO, publish, tiny_whisper_files

pytest.importorskip("transformers")
SR = 24_000


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is latency-bound: on a shared 2-core runner, torch's threads only wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return tiny_whisper_files(str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def settings(tmp_path, whisper_dir):
    settings = Settings(volume=tmp_path / "volume", offline=True, legacy_model_dirs=(), asr_model=REPO)
    publish(settings.hub_cache, whisper_dir)
    return settings


class TestTranscriber:
    def test_loads_offline_from_the_hub_cache_and_says_the_transcript_is_gibberish(self, settings):
        transcriber = Transcriber(settings)
        transcript = transcriber.transcribe(tone(2.0), SR)
        assert transcript.text and transcript.model == REPO and not transcript.cached
        assert "more than anyone says" in transcript.problem  # random weights: 220 byte tokens for 2 s
        assert transcriber.status() == {"model": REPO, "state": "ready"}

    def test_one_transcription_per_reference_then_the_volume_cache(self, settings):
        first = Transcriber(settings)
        a = first.transcribe(tone(2.0, 330), SR)
        assert first.transcribe(tone(2.0, 330), SR).cached and first.calls == 1
        # another worker on the same volume: the transcript is read, the model never loaded
        second = Transcriber(settings)
        b = second.transcribe(tone(2.0, 330), SR)
        assert (b.text, b.cached, second.calls, second.status()["state"]) == (a.text, True, 0, "not loaded")
        entries = list((settings.root / "cache" / "transcripts").iterdir())
        assert len(entries) == 1 and json.loads(entries[0].read_text())["text"] == a.text
        assert not [p for p in entries if p.name.endswith(".incomplete")]

    def test_a_local_directory_is_loaded_where_it_is(self, tmp_path, whisper_dir):
        transcriber = Transcriber(Settings(volume=tmp_path, offline=True, asr_model=str(whisper_dir)))
        assert transcriber.transcribe(tone(1.0), SR).text

    def test_a_model_not_in_the_cache_offline_says_where_it_looked(self, tmp_path):
        transcriber = Transcriber(Settings(volume=tmp_path, offline=True, legacy_model_dirs=(),
                                           asr_model="nobody/no-whisper"))
        with pytest.raises(TranscriptionUnavailable, match="the ASR model nobody/no-whisper is unavailable") as caught:
            transcriber.transcribe(tone(1.0), SR)
        assert caught.value.status == 503 and "send ref_text" in str(caught.value)
        assert transcriber.status()["state"] == "failed"

    def test_without_transformers_the_error_says_how_to_enable_it(self, settings, monkeypatch):
        monkeypatch.setitem(sys.modules, "transformers", None)  # as if the asr extra were not installed
        with pytest.raises(TranscriptionUnavailable, match=r"pip install 'f5-worker\[asr\]'"):
            Transcriber(settings).transcribe(tone(1.0), SR)

    def test_importing_the_worker_imports_no_transformers(self):
        import subprocess

        code = ("import sys, f5_worker.worker, f5_worker.asr, f5_worker.serving.service, f5_worker.serving.api; "
                "print('transformers' in sys.modules)")
        assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip() == "False"


@pytest.mark.slow
def test_preload_loads_in_the_background_after_the_worker_is_ready(settings):
    import time

    from f5_worker.worker import Worker

    worker = Worker(settings.replace(model="tiny-random", flash_attn="off", asr_preload=True)).load(warm_up=False)
    assert worker.state == "ready"
    deadline = time.monotonic() + 120
    while worker.health()["asr"]["state"] != "ready" and time.monotonic() < deadline:
        assert worker.health()["asr"]["state"] in ("not loaded", "loading")
        time.sleep(0.1)
    assert worker.health()["asr"] == {"model": REPO, "state": "ready"}
    assert worker.service.transcriber.calls == 0  # loaded, not used


@pytest.mark.parametrize("text, seconds, problem", [
    ("Some call me nature, others call me mother nature.", 3.2, None),
    ("对，这就是我，万人敬仰的太乙真人。", 3.0, None),
    ("", 2.0, "no words"),
    ("... !!", 2.0, "no words"),
    ("X" * 220, 2.0, "more than anyone says"),
])
def test_judge(text, seconds, problem):
    got = judge(text, seconds)
    assert got is None if problem is None else problem in got


def test_off_builds_no_transcriber(tmp_path):
    with pytest.raises(ValueError):
        Transcriber(Settings(volume=tmp_path, asr_model="off"))
