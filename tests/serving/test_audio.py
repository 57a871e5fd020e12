"""Reference audio in (any common file -> 24 kHz mono float32), requested audio out (every format, any rate)."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f5_worker.serving import audio
from f5_worker.serving.errors import AudioError

SR = 24_000
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")


def tone(seconds: float, rate: int = SR, hz: float = 440.0, channels: int = 1, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def file_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))


# What callers send: (libsndfile format, subtype, rate, channels)
REFERENCES = {
    "wav 44.1 kHz stereo 16-bit": ("WAV", "PCM_16", 44_100, 2),
    "wav 16 kHz mono float": ("WAV", "FLOAT", 16_000, 1),
    "flac 48 kHz": ("FLAC", "PCM_24", 48_000, 1),
    "ogg vorbis 22.05 kHz": ("OGG", "VORBIS", 22_050, 1),
    "ogg opus 48 kHz": ("OGG", "OPUS", 48_000, 1),
    "mp3 44.1 kHz stereo": ("MP3", "MPEG_LAYER_III", 44_100, 2),
}


class TestDecode:
    @pytest.mark.parametrize("name", REFERENCES)
    def test_common_files_become_24khz_mono_float32(self, name):
        fmt, subtype, rate, channels = REFERENCES[name]
        got = audio.decode(file_bytes(tone(3.0, rate, channels=channels), rate, fmt, subtype), max_seconds=60)
        assert got.dtype == np.float32 and got.ndim == 1
        assert len(got) / SR == pytest.approx(3.0, abs=0.03)
        assert peak_hz(got, SR) == pytest.approx(440, abs=2)
        assert not got.flags.writeable  # safe to share from the voice cache

    @needs_ffmpeg
    def test_what_libsndfile_cannot_open_goes_to_ffmpeg(self, tmp_path):
        (tmp_path / "in.wav").write_bytes(file_bytes(tone(2.0, 44_100), 44_100, "WAV"))
        subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(tmp_path / "in.wav"), "-c:a", "aac",
                        "-f", "adts", str(tmp_path / "ref.aac")], check=True)
        data = (tmp_path / "ref.aac").read_bytes()
        got = audio.decode(data, max_seconds=60)
        assert len(got) / SR == pytest.approx(2.0, abs=0.1)
        assert peak_hz(got, SR) == pytest.approx(440, abs=2)
        with pytest.raises(AudioError, match=r"libsndfile: .*send wav, flac, mp3 or ogg"):
            audio.decode(data, max_seconds=60, ffmpeg=False)

    def test_ffmpeg_may_open_nothing_but_its_stdin(self, tmp_path):
        # A crafted playlist must not make ffmpeg fetch URLs or read files; ffmpeg >= 5 already limits
        # nested opens from a pipe, and the worker does not rely on that.
        fake = tmp_path / "ffmpeg"
        fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\ncat > /dev/null\nexit 1\n")
        fake.chmod(0o755)
        with pytest.raises(AudioError, match="ffmpeg: ffmpeg exited with status 1"):
            audio.decode(b"#EXTM3U\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data\n", max_seconds=60,
                         ffmpeg=str(fake))
        args = (tmp_path / "args").read_text().split()
        assert args[args.index("-protocol_whitelist") + 1] == "pipe"
        assert args.index("-protocol_whitelist") < args.index("-i") and args[args.index("-i") + 1] == "pipe:0"

    def test_too_long_is_refused_from_the_header_before_the_samples_are_read(self, monkeypatch):
        data = file_bytes(tone(61.0, 16_000), 16_000, "WAV")
        monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("read the samples of a long file"))
        with pytest.raises(AudioError) as caught:
            audio.decode(data, max_seconds=60)
        assert str(caught.value) == ("reference audio is 61.0 s long, over the limit of 60 s "
                                     "(F5_WORKER_MAX_REF_SECONDS); send a shorter clip (F5-TTS uses only about "
                                     "the first 12 s)")

    @pytest.mark.parametrize("data, message", [
        (b"", "reference audio is empty (0 bytes)"),
        (b"hello, this is not audio", "reference audio (24 bytes) is not audio we can decode (libsndfile: "),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "is not audio we can decode"),  # a wav cut off in its header
        (file_bytes(np.zeros(0, np.float32), SR, "WAV"), "reference audio has no samples (0 s long)"),
        (file_bytes(np.array([0.1, np.nan, 0.2], np.float32), SR, "WAV", "FLOAT"), "contains NaN or infinite"),
    ])
    def test_bad_bytes_get_a_clear_error(self, data, message):
        with pytest.raises(AudioError) as caught:
            audio.decode(data, max_seconds=60)
        assert message in str(caught.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048) | st.builds(
    lambda data, at, junk: data[:at] + junk + data[at + len(junk):],  # a real file with bytes overwritten
    st.sampled_from([file_bytes(tone(0.2, rate), rate, fmt, subtype) for fmt, subtype, rate, _ in
                     REFERENCES.values()]),
    st.integers(0, 400), st.binary(min_size=1, max_size=16)))
def test_any_bytes_decode_or_raise_audio_error(data):
    try:
        got = audio.decode(data, max_seconds=5, ffmpeg=False)
    except AudioError as exc:
        assert str(exc)
    else:
        assert got.dtype == np.float32 and 0 < len(got) <= 5 * SR + SR // 100 and np.isfinite(got).all()


class TestPrepareReference:
    def test_a_long_reference_is_clipped_to_about_12_seconds(self):
        speech = np.concatenate([np.concatenate([tone(1.5, hz=200), np.zeros(int(1.2 * SR), np.float32)])] * 10)
        got = audio.prepare_reference(file_bytes(speech, SR, "FLAC"), max_seconds=60)
        assert 6.0 < len(got) / SR <= 12.05
        assert not got.flags.writeable

    def test_a_silent_reference_is_refused(self):
        with pytest.raises(AudioError, match=r"^reference audio is silent \(quieter than -42 dBFS throughout\)"):
            audio.prepare_reference(file_bytes(np.zeros(SR * 3, np.float32), SR, "WAV"), max_seconds=60)


OUTPUT_RATES = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000]


class TestEncode:
    @pytest.mark.parametrize("fmt, rate", [(fmt, rate) for fmt in ("wav", "flac", "mp3", "opus") for rate in OUTPUT_RATES
                                           if fmt != "opus" or rate in (8_000, 16_000, 24_000, 48_000)])
    def test_every_format_decodes_back_to_the_duration_and_rate_asked_for(self, fmt, rate):
        data = audio.encode(tone(2.0), rate, fmt)
        back, back_rate = sf.read(io.BytesIO(data), dtype="float32")
        assert back_rate == rate
        assert len(back) / rate == pytest.approx(2.0, abs=0.01)
        assert peak_hz(back, rate) == pytest.approx(440, abs=2)
        assert sf.info(io.BytesIO(data)).format == {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "opus": "OGG"}[fmt]

    def test_wav_and_flac_are_16_bit(self):
        assert sf.info(io.BytesIO(audio.encode(tone(0.5), SR, "wav"))).subtype == "PCM_16"
        assert sf.info(io.BytesIO(audio.encode(tone(0.5), SR, "flac"))).subtype == "PCM_16"
        assert sf.info(io.BytesIO(audio.encode(tone(0.5), SR, "opus"))).subtype == "OPUS"

    @pytest.mark.parametrize("rate", OUTPUT_RATES)
    def test_pcm_is_headerless_s16le(self, rate):
        data = audio.encode(tone(2.0), rate, "pcm")
        back = np.frombuffer(data, "<i2").astype(np.float32) / 32767
        assert len(back) == 2 * rate
        assert peak_hz(back, rate) == pytest.approx(440, abs=2)
        assert np.abs(back).max() == pytest.approx(0.3, abs=0.01)

    @needs_ffmpeg
    @pytest.mark.parametrize("fmt", ["mp3", "opus"])
    def test_compressed_outputs_also_read_back_in_ffmpeg(self, fmt):
        data = audio.encode(tone(2.0), 48_000, fmt)
        probe = subprocess.run([FFMPEG, "-hide_banner", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "pipe:1"],
                               input=data, capture_output=True, check=True)
        assert len(probe.stdout) / 2 / 48_000 == pytest.approx(2.0, abs=0.03)

    def test_out_of_range_samples_are_clipped_not_wrapped(self):
        back = np.frombuffer(audio.encode(np.array([2.0, -2.0, np.nan], np.float32), SR, "pcm"), "<i2")
        assert back.tolist() == [32767, -32767, 0]

    @pytest.mark.parametrize("samples, rate, fmt, message", [
        (tone(0.1), SR, "aac", "output format 'aac' is not one of wav, flac, mp3, opus, pcm"),
        (tone(0.1), 22_050, "opus", "sample_rate 22050 is not available for opus"),
        (np.zeros(0, np.float32), SR, "wav", "there is no audio to encode (0 samples)"),
        (tone(0.1, channels=2), SR, "wav", "expected mono samples (one dimension), got shape (2400, 2)"),
    ])
    def test_what_cannot_be_encoded(self, samples, rate, fmt, message):
        with pytest.raises(AudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
            audio.encode(samples, rate, fmt)


def test_output_duration_limit():
    audio.check_output_duration(300 * SR, SR, 300)
    with pytest.raises(AudioError) as caught:
        audio.check_output_duration(301 * SR, SR, 300)
    assert str(caught.value) == ("generated audio is 301.0 s long, over the limit of 300 s "
                                 "(F5_WORKER_MAX_OUTPUT_SECONDS); send shorter text or a higher speed")
