"""The request schema: what a caller may send, and the one-line error they get when it is wrong."""

from __future__ import annotations

import base64
import io
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from f5_worker.errors import ConfigError
from f5_worker.serving.errors import RequestError
from f5_worker.serving.request import (
    Limits,
    RefBytes,
    RefURL,
    RefVoice,
    SynthesisRequest,
    parse_openai_speech,
    parse_request,
)


def wav_bytes(seconds: float = 0.1, rate: int = 24_000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate)
        out.writeframes(b"\x00\x01" * int(seconds * rate))
    return buffer.getvalue()


WAV = wav_bytes()
BASE = {"text": "The quick brown fox jumps over the lazy dog.", "ref_audio": "narrator_en"}


def request(**fields) -> SynthesisRequest:
    return parse_request({**BASE, **fields})


def error(payload, limits: Limits = Limits()) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_request(payload, limits)
    return caught.value


class TestParseRequest:
    def test_a_minimal_request_gets_f5_tts_defaults(self):
        assert request() == SynthesisRequest(text=BASE["text"], ref_audio=RefVoice("narrator_en"), ref_text=None,
                                             speed=1.0, nfe_step=32, cfg_strength=2.0, sway_sampling_coef=-1.0,
                                             cross_fade_duration=0.15, seed=None, remove_silence=False,
                                             output_format="wav", sample_rate=24_000, delivery="inline")

    def test_every_field_is_taken(self):
        got = request(ref_text="Some call me nature.", speed=1.25, nfe_step=16, cfg_strength=2.5,
                      sway_sampling_coef=0.0, cross_fade_duration=0.0, seed=42, remove_silence=True,
                      output_format="MP3", sample_rate=44_100, delivery="s3")
        assert (got.ref_text, got.speed, got.nfe_step, got.cfg_strength, got.sway_sampling_coef) == (
            "Some call me nature.", 1.25, 16, 2.5, 0.0)
        assert (got.cross_fade_duration, got.seed, got.remove_silence, got.output_format, got.sample_rate,
                got.delivery) == (0.0, 42, True, "mp3", 44_100, "s3")

    def test_integral_floats_count_as_integers(self):
        assert request(nfe_step=16.0, seed=7.0).nfe_step == 16

    @pytest.mark.parametrize("field, value, message", [
        ("nfe_step", 500, "nfe_step must be between 4 and 128, got 500"),
        ("nfe_step", 3, "nfe_step must be between 4 and 128, got 3"),
        ("nfe_step", 32.5, "nfe_step must be an integer, got 32.5"),
        ("speed", 0.1, "speed must be between 0.3 and 3, got 0.1"),
        ("speed", 3.5, "speed must be between 0.3 and 3, got 3.5"),
        ("speed", "1.0", "speed must be a number, got '1.0' (a string)"),
        ("speed", True, "speed must be a number, got True (a boolean)"),
        ("speed", float("nan"), "speed must be a finite number, got nan"),
        ("cfg_strength", 11, "cfg_strength must be between 0 and 10, got 11"),
        ("sway_sampling_coef", -1.5, "sway_sampling_coef must be between -1 and 1, got -1.5"),
        ("cross_fade_duration", 2, "cross_fade_duration must be between 0 and 1, got 2"),
        ("seed", -1, "seed must be between 0 and 2147483647, got -1; leave it out or null for a random seed"),
        ("seed", 2**31, "seed must be between 0 and 2147483647, got 2147483648"),
        ("sample_rate", 96_000, "sample_rate must be between 8000 and 48000, got 96000"),
        ("nfe_step", None, "nfe_step must be a number, got null; leave it out for the default"),
        ("nfe_step", 10**400, "nfe_step must be between 4 and 128, got 100000000000... (401 digits)"),
        ("remove_silence", "yes", "remove_silence must be true or false, got 'yes' (a string)"),
        ("output_format", "ogg", "output_format must be one of wav, flac, mp3, opus, pcm, got 'ogg' "
                                 "(did you mean 'opus'?)"),
        ("output_format", "aac", "output_format must be one of wav, flac, mp3, opus, pcm, got 'aac'"),
        ("delivery", "email", "delivery must be one of inline, s3, got 'email'"),
    ])
    def test_a_value_out_of_its_rule_is_named_with_the_rule(self, field, value, message):
        problem = error({**BASE, field: value})
        assert str(problem) == message
        assert problem.field == field

    def test_seed_null_means_random(self):
        assert request(seed=None).seed is None

    @pytest.mark.parametrize("fmt, rate, message", [
        ("opus", 22_050, "sample_rate 22050 is not available for opus; use one of 8000, 12000, 16000, 24000, 48000"),
        ("mp3", 44_000, "sample_rate 44000 is not available for mp3; use one of 8000, 11025, 12000, 16000, "
                        "22050, 24000, 32000, 44100, 48000"),
    ])
    def test_a_rate_the_format_cannot_carry_is_refused_before_synthesis(self, fmt, rate, message):
        assert str(error({**BASE, "output_format": fmt, "sample_rate": rate})) == message

    def test_wav_flac_and_pcm_take_any_rate_in_range(self):
        assert {request(output_format=f, sample_rate=22_050).sample_rate for f in ("wav", "flac", "pcm")} == {22_050}

    def test_unknown_fields_are_refused_with_a_guess(self):
        assert str(error({**BASE, "spead": 1.0})).startswith("unknown field 'spead' (did you mean 'speed'?); allowed")
        assert "(did you mean 'text'?)" in str(error({"gen_text": "hi", "ref_audio": "v"}))
        assert "(did you mean 'nfe_step'?)" in str(error({**BASE, "steps": 16}))

    def test_the_input_must_be_an_object(self):
        assert str(error(["hello"])) == "input must be a JSON object, got a list"
        assert str(error(None)) == "input must be a JSON object, got null"

    @pytest.mark.parametrize("payload, message", [
        ({"ref_audio": "v"}, "text is required: the words to speak"),
        ({"text": "   ", "ref_audio": "v"}, "text is empty; give the words to speak"),
        ({"text": 5, "ref_audio": "v"}, "text must be a string, got 5 (a number)"),
        ({"text": "hi"}, "ref_audio is required: an https URL, base64 audio, or the name of a stored voice"),
    ])
    def test_text_and_ref_audio_are_required(self, payload, message):
        assert str(error(payload)) == message

    def test_text_over_the_limit_names_the_setting(self):
        problem = error({**BASE, "text": "a" * 101}, Limits(max_text_chars=100))
        assert str(problem) == ("text is 101 characters, over the limit of 100 (F5_WORKER_MAX_TEXT_CHARS); "
                                "split it into several requests")
        assert request(text="a" * 5000).text == "a" * 5000

    def test_blank_ref_text_means_transcribe(self):
        assert request(ref_text="  ").ref_text is None


class TestRefAudio:
    @pytest.mark.parametrize("value", [
        "https://voices.example.com/narrator.wav",
        "https://s3.amazonaws.com/bucket/v.wav?X-Amz-Signature=abc",
        "http://mirror.internal:8080/v.flac",  # http is the fetcher's decision, under the operator's setting
    ])
    def test_urls(self, value):
        assert request(ref_audio=value).ref_audio == RefURL(value)

    @pytest.mark.parametrize("value", ["narrator_en", "en-US.female.1", "A", "v" * 64, "2024_voice"])
    def test_voice_names(self, value):
        assert request(ref_audio=value).ref_audio == RefVoice(value)

    @pytest.mark.parametrize("value", ["../etc/passwd", "voices/../../x", "a/b", "..", "a..b", ".hidden", "-v",
                                       "v" * 65 + "!", "C:\\voices\\x", "name with space", "ünïcode"])
    def test_names_that_could_escape_the_voices_directory_are_refused(self, value):
        problem = error({**BASE, "ref_audio": value})
        assert problem.field == "ref_audio"
        assert "voice name" in str(problem) or "base64" in str(problem)

    def test_a_bad_voice_name_message_says_what_is_allowed(self):
        assert str(error({**BASE, "ref_audio": "../etc/passwd"})) == (
            "ref_audio '../etc/passwd' is not an https URL, base64 audio, or a voice name (1-64 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit; no '/' or '..')")

    @pytest.mark.parametrize("value", ["file:///etc/passwd", "ftp://example.com/v.wav", "s3://bucket/v.wav",
                                       "gopher://127.0.0.1:6379/_INFO"])
    def test_other_url_schemes_are_refused(self, value):
        assert "is not supported; use an https URL" in str(error({**BASE, "ref_audio": value}))

    def test_plain_base64_is_decoded(self):
        assert request(ref_audio=base64.b64encode(WAV).decode()).ref_audio == RefBytes(WAV)

    def test_a_data_url_keeps_its_media_type(self):
        got = request(ref_audio="data:audio/wav;base64," + base64.b64encode(WAV).decode()).ref_audio
        assert got == RefBytes(WAV, "audio/wav")

    def test_base64_with_line_breaks_and_the_url_safe_alphabet_is_accepted(self):
        encoded = base64.b64encode(WAV).decode()
        wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
        assert request(ref_audio=wrapped).ref_audio == RefBytes(WAV)
        assert request(ref_audio=base64.urlsafe_b64encode(WAV).decode().rstrip("=")).ref_audio == RefBytes(WAV)

    def test_the_size_cap_applies_before_decoding(self, monkeypatch):
        monkeypatch.setattr(base64, "b64decode", lambda *a, **k: pytest.fail("decoded an oversized payload"))
        problem = error({**BASE, "ref_audio": "A" * 4000}, Limits(max_ref_bytes=1000))
        assert str(problem).startswith("ref_audio base64 decodes to about 3000 bytes, over the limit of 1000 "
                                       "(F5_WORKER_MAX_REF_BYTES)")

    @pytest.mark.parametrize("value, message", [
        ("data:text/plain;base64,aGVsbG8=", "ref_audio data URL has media type 'text/plain'; send audio"),
        ("data:audio/wav,RIFF", "ref_audio data URL must be base64-encoded"),
        ("data:audio/wav;base64", "ref_audio data URL has no ',' before its payload"),
        ("data:audio/wav;base64,", "ref_audio base64 decodes to 0 bytes"),
        ("!" * 100, "ref_audio is not valid base64: character '!' is outside the base64 alphabet"),
        ("A" * 101, "ref_audio is not valid base64"),
    ])
    def test_broken_inline_audio(self, value, message):
        assert str(error({**BASE, "ref_audio": value})).startswith(message)

    def test_a_url_without_a_host_is_refused(self):
        assert str(error({**BASE, "ref_audio": "https:///v.wav"})) == "ref_audio URL 'https:///v.wav' has no host"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(["text", "ref_audio", "ref_text", "speed", "nfe_step", "cfg_strength", "seed",
                               "sway_sampling_coef", "cross_fade_duration", "remove_silence", "output_format",
                               "sample_rate", "delivery", "model", "input", "voice", "response_format"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELD_NAMES | st.text(max_size=8), JSON, max_size=8) | JSON)
def test_any_json_gets_a_request_or_a_request_error(payload):
    for parse in (parse_request, parse_openai_speech):
        try:
            assert isinstance(parse(payload, Limits(max_ref_bytes=10_000)), SynthesisRequest)
        except RequestError as exc:
            assert str(exc) and "Traceback" not in str(exc)


class TestOpenAISpeech:
    def test_an_openai_sdk_request(self):
        got = parse_openai_speech({"model": "tts-1", "input": "Hello there.", "voice": "alloy"})
        assert got == SynthesisRequest(text="Hello there.", ref_audio=RefVoice("alloy"), output_format="mp3")

    @pytest.mark.parametrize("fmt", ["mp3", "opus", "flac", "wav", "pcm"])
    def test_formats_we_produce(self, fmt):
        got = parse_openai_speech({"model": "tts-1-hd", "input": "x", "voice": "v", "response_format": fmt,
                                   "speed": 1.5})
        assert (got.output_format, got.sample_rate, got.speed) == (fmt, 24_000, 1.5)

    def test_a_custom_voice_object(self):
        assert parse_openai_speech({"model": "m", "input": "x", "voice": {"id": "narrator"}}).ref_audio == \
            RefVoice("narrator")

    @pytest.mark.parametrize("payload, message", [
        ({"input": "x", "voice": "v", "response_format": "aac"},
         "response_format 'aac' is not supported by this server; use one of mp3, opus, flac, wav, pcm"),
        ({"input": "x", "voice": "v", "speed": 4.0}, "speed must be between 0.3 and 3, got 4"),
        ({"input": "x"}, "voice is required: the name of a voice (GET /v1/audio/voices) or one of OpenAI's (alloy"),
        ({"voice": "v"}, "input is required: the words to speak"),
        ({"input": "x", "voice": "../v"}, "voice '../v' is not an https URL, base64 audio, or a voice name"),
        ({"input": "x", "voice": "v", "stream_format": "chunks"}, "stream_format must be 'audio' or 'sse', got 'chunks'"),
        ({"input": "x", "voice": "v", "text": "y"}, "unknown field 'text' (did you mean 'input'?)"),
    ])
    def test_what_we_cannot_do_is_refused_clearly(self, payload, message):
        with pytest.raises(RequestError) as caught:
            parse_openai_speech(payload)
        assert str(caught.value).startswith(message)

    def test_openai_model_names_are_aliases_of_the_served_model(self):
        models = ("F5TTS_v1_Base", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
        for model in models:
            assert parse_openai_speech({"model": model, "input": "x", "voice": "alloy"}, models=models).text == "x"
        with pytest.raises(RequestError, match="model 'whisper-1' is not served here; use one of F5TTS_v1_Base, tts-1"):
            parse_openai_speech({"model": "whisper-1", "input": "x", "voice": "alloy"}, models=models)

    def test_instructions_are_accepted_and_ignored(self):
        assert parse_openai_speech({"input": "x", "voice": "v", "instructions": "whisper"}).text == "x"


class TestLimits:
    def test_defaults(self):
        assert Limits() == Limits(max_text_chars=5000, max_ref_bytes=10 * 1024**2, max_ref_seconds=60.0,
                                  max_output_seconds=300.0, download_timeout_s=15.0)

    @pytest.mark.parametrize("field, setting", [("max_text_chars", "F5_WORKER_MAX_TEXT_CHARS"),
                                                ("download_timeout_s", "F5_WORKER_REF_DOWNLOAD_TIMEOUT")])
    def test_a_limit_must_be_positive(self, field, setting):
        with pytest.raises(ConfigError, match=f"^{setting}=0 must be a finite number greater than 0$"):
            Limits(**{field: 0})


class TestShortBase64Audio:
    """Base64 too short to be audio (issue 15): reported as undecodable audio, not as a bad voice name."""

    CUT_WAV_HEADER = WAV[:16]  # b"RIFF....WAVEfmt ": a wav cut off inside its header

    @pytest.mark.parametrize("encode, media_type", [
        (lambda b: base64.b64encode(b).decode(), None),  # 24 characters, with '=' padding
        (lambda b: base64.b64encode(b).decode().rstrip("="), None),  # 22 characters: also a well-formed voice name
        (lambda b: base64.urlsafe_b64encode(b).decode(), None),
        (lambda b: "data:audio/wav;base64," + base64.b64encode(b).decode(), "audio/wav"),
    ])
    def test_a_cut_wav_header_is_inline_audio(self, encode, media_type):
        assert request(ref_audio=encode(self.CUT_WAV_HEADER)).ref_audio == RefBytes(self.CUT_WAV_HEADER, media_type)

    def test_decoding_it_says_undecodable_audio_too_short(self):
        from f5_worker.serving import audio
        from f5_worker.serving.errors import AudioError

        ref = request(ref_audio=base64.b64encode(self.CUT_WAV_HEADER).decode()).ref_audio
        with pytest.raises(AudioError) as caught:
            audio.decode(ref.data, max_seconds=60, ffmpeg=False)
        message = str(caught.value)
        assert message.startswith("reference audio (16 bytes) is not audio we can decode (libsndfile: ")
        assert "16 bytes is too short for any audio file (a wav header alone is 44): was it cut off?" in message
        assert "voice name" not in message

    @pytest.mark.parametrize("head", [b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02\x00\x00", b"ID3\x04\x00\x00\x00",
                                      b"\xff\xfb\x90\x64\x00", b"\x00\x00\x00\x20ftypM4A "])
    def test_other_audio_heads(self, head):
        assert request(ref_audio=base64.b64encode(head).decode()).ref_audio == RefBytes(head, None)

    @pytest.mark.parametrize("value", ["narrator_en", "SUQzanne", "UklGzzz", "Test1234", "aGVsbG8"])
    def test_voice_names_that_happen_to_be_base64_stay_voice_names(self, value):
        assert request(ref_audio=value).ref_audio == RefVoice(value)

    def test_short_base64_of_something_else_still_gets_the_voice_name_message(self):
        assert "is not an https URL, base64 audio, or a voice name" in str(error({**BASE, "ref_audio": "aGVsbG8="}))
