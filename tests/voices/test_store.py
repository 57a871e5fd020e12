"""Voices by name: built in, stored on the volume (whole or absent, with many writers), OpenAI's names."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from f5_worker.serving.errors import RequestError, VoiceExists, VoiceNotFound, VoiceReadOnly
from f5_worker.voices import OPENAI_VOICES, VoiceStore, builtin_voices
from support.engine import tone, wav_bytes


@pytest.fixture
def store(tmp_path):
    return VoiceStore(tmp_path / "voices", default_voice="basic_ref_en")


class TestBuiltIn:
    def test_f5_tts_examples_ship_with_their_words(self):
        voices = builtin_voices()
        assert set(voices) == {"basic_ref_en", "basic_ref_zh"}
        assert voices["basic_ref_en"].text == "Some call me nature, others call me mother nature."
        assert voices["basic_ref_zh"].text == "对，这就是我，万人敬仰的太乙真人。"
        for voice in voices.values():
            info = sf.info(str(voice.path))
            assert (info.samplerate, info.channels) == (24_000, 1) and 5 < info.duration < 7
            assert (voice.path.parent / "F5-TTS-LICENSE").is_file()

    @pytest.mark.parametrize("name", OPENAI_VOICES + ("Alloy",))
    def test_every_openai_name_speaks_with_the_default_voice(self, store, name):
        assert store.resolve(name).id == "basic_ref_en"

    def test_the_default_voice_is_configurable(self, tmp_path):
        assert VoiceStore(tmp_path, default_voice="basic_ref_zh").resolve("nova").id == "basic_ref_zh"
        with pytest.raises(VoiceNotFound, match="default voice 'gone'"):
            VoiceStore(tmp_path, default_voice="gone").resolve("nova")

    def test_built_in_voices_cannot_be_deleted_or_replaced(self, store):
        with pytest.raises(VoiceReadOnly, match="built in"):
            store.delete("basic_ref_en")
        with pytest.raises(VoiceExists, match="built in"):
            store.create("basic_ref_en", tone(1.0), "x", transcribed=False)


class TestStored:
    def test_create_list_resolve_delete(self, store):
        voice = store.create("narrator-1", tone(2.0), "A steady tone.", transcribed=False)
        assert (voice.id, voice.text, voice.prepared, voice.seconds) == ("narrator-1", "A steady tone.", True, 2.0)
        assert [v.id for v in store.list()] == ["narrator-1", "basic_ref_en", "basic_ref_zh"]
        samples, rate = sf.read(str(store.resolve("narrator-1").path), dtype="float32")
        np.testing.assert_array_equal(samples, tone(2.0))  # stored exactly: never decoded or clipped again
        assert store.delete("narrator-1").id == "narrator-1"
        assert [v.id for v in store.list()] == ["basic_ref_en", "basic_ref_zh"]
        assert list(store.directory.iterdir()) == []  # nothing left aside
        with pytest.raises(VoiceNotFound):
            store.delete("narrator-1")

    def test_a_name_is_taken_once(self, store):
        store.create("bob", tone(1.0), "Bob.", transcribed=False)
        with pytest.raises(VoiceExists, match="already exists"):
            store.create("bob", tone(1.0, 300), "Another Bob.", transcribed=False)
        assert store.resolve("bob").text == "Bob."

    @pytest.mark.parametrize("name", ["../evil", "..", "a/b", ".hidden", "-dash", "a" * 65, "", " ", "x..y", "é"])
    def test_names_that_are_not_file_names_are_refused(self, store, name):
        with pytest.raises(RequestError, match="cannot name a voice|is required"):
            store.create(name, tone(1.0), "x", transcribed=False)
        assert not store.directory.exists() or list(store.directory.iterdir()) == []

    def test_an_operators_files_are_voices_too(self, store):
        store.directory.mkdir(parents=True)
        (store.directory / "alice.wav").write_bytes(wav_bytes(tone(1.0)))
        (store.directory / "alice.txt").write_text("Alice says hello.\n")
        (store.directory / "quiet.flac").write_bytes(b"not read until used")
        (store.directory / ".hidden.wav").write_bytes(b"x")
        assert {v.id: (v.kind, v.text) for v in store.list() if not v.builtin} == {
            "alice": ("file", "Alice says hello."), "quiet": ("file", None)}  # quiet: transcribed when used
        store.delete("alice")
        assert not (store.directory / "alice.txt").exists() and store.get("alice") is None

    def test_an_unknown_name_lists_the_known_ones(self, store):
        with pytest.raises(VoiceNotFound, match="voice 'nobody' is not stored on this worker; known voices: "
                                                "basic_ref_en, basic_ref_zh"):
            store.resolve("nobody")

    def test_a_half_written_voice_is_not_a_voice(self, store):
        """What a writer killed mid-way leaves: a staging directory, or a folder without voice.json."""
        (store.directory / ".incoming-x-123").mkdir(parents=True)
        (store.directory / "half").mkdir()
        (store.directory / "half" / "audio.wav").write_bytes(b"x")
        assert [v.id for v in store.list()] == ["basic_ref_en", "basic_ref_zh"]


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from f5_worker.serving.errors import VoiceExists
    from f5_worker.voices import VoiceStore

    directory, who, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = VoiceStore(directory)
    won = []
    for i in range(count):
        # both writers want every name; each writes its own audio and the words that say whose it is
        samples = np.full(24000 + 4800 * who, 0.01 * (who + 1) + 0.001 * i, dtype=np.float32)
        try:
            store.create(f"voice-{i}", samples, f"writer {who} voice {i}", transcribed=False)
            won.append(i)
        except VoiceExists:
            pass
        store.create(f"own-{who}-{i}", samples, f"writer {who} voice {i}", transcribed=False)
    print(won)
""")


@pytest.mark.slow
def test_two_processes_creating_voices_at_once_both_end_whole(tmp_path):
    directory = tmp_path / "voices"
    count = 25
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(who), str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in (0, 1)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    won = [set(json.loads(out)) for out, _ in outputs]
    assert won[0] | won[1] == set(range(count)) and not won[0] & won[1]  # each contested name: one winner
    store = VoiceStore(directory)
    voices = {v.id: v for v in store.list() if not v.builtin}
    assert len(voices) == count + 2 * count
    for name, voice in voices.items():  # whole: words and audio from the same writer
        who = int(voice.text.split()[1])
        samples, _ = sf.read(str(voice.path), dtype="float32")
        assert len(samples) == 24000 + 4800 * who, name
        i = int(voice.text.split()[-1])
        assert np.allclose(samples, 0.01 * (who + 1) + 0.001 * i), name
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no staging or deleted leftovers
