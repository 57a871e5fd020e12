"""Hostile references that tests/serving does not already send: sizes declared far beyond the bytes, and
bombs (compressed audio that would decode to hours, gzip and zip bombs in base64 and over HTTP).
Each must end in an AudioError or a bounded decode, quickly and without the memory the header promises;
and a running worker must answer each with FAILED and keep serving.
"""

from __future__ import annotations

import base64
import gzip
import io
import socket
import struct
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf
from werkzeug import Response

from f5_worker.serving import audio
from f5_worker.serving.errors import AudioError
from f5_worker.serving.fetch import fetch_reference
from f5_worker.serving.request import Limits, RefBytes, parse_request

from .conftest import post

SR = 24_000
MAX_S = 60.0
QUICK_S = 10.0  # far above what any of these take; a decode that reads the declared size would not finish


def wav_with_declared(data_bytes: int, frames: bytes, riff_size: int | None = None) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, SR, SR * 2, 2, 16)
    riff = riff_size if riff_size is not None else 4 + 8 + len(fmt) + 8 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF) + frames)


def flac_with_declared_samples(total: int) -> bytes:
    """A real 0.1 s FLAC whose STREAMINFO claims ``total`` samples (36 bits)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(SR // 10, np.float32), SR, format="FLAC")
    data = bytearray(buf.getvalue())
    # STREAMINFO starts at 8 ("fLaC" + block header); total samples are the low 36 bits of bytes 21..25.
    packed = int.from_bytes(data[21:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | (total & ((1 << 36) - 1))
    data[21:26] = packed.to_bytes(5, "big")
    return bytes(data)


def silence(seconds: float, fmt: str, subtype: str | None = None, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, 1, format=fmt, subtype=subtype) as f:
        block = np.zeros(rate * 10, np.float32)
        for _ in range(int(seconds // 10)):
            f.write(block)
    return buf.getvalue()


def gzip_bomb(megabytes: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as g:
        block = b"\0" * (1 << 20)
        for _ in range(megabytes):
            g.write(block)
    return out.getvalue()


def zip_bomb(megabytes: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("reference.wav", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(megabytes):
                member.write(block)
    return out.getvalue()


def decode_bounded(data: bytes, ffmpeg: bool | str = True) -> np.ndarray | AudioError:
    began = time.monotonic()
    try:
        got: np.ndarray | AudioError = audio.decode(data, max_seconds=MAX_S, ffmpeg=ffmpeg)
    except AudioError as exc:
        got = exc
    assert time.monotonic() - began < QUICK_S
    if isinstance(got, np.ndarray):
        assert 0 < len(got) <= MAX_S * SR + SR // 100 and np.isfinite(got).all()
    return got


class TestDeclaredSizes:
    @pytest.mark.parametrize("declared", [2**31, 0xFFFFFFF0, 0xFFFFFFFF])
    def test_a_wav_declaring_gigabytes_of_samples_it_does_not_hold(self, declared):
        got = decode_bounded(wav_with_declared(declared, b"\x01\x00" * 4800))
        # libsndfile clamps the data chunk to the file: 0.2 s of audio, or a clear refusal
        assert isinstance(got, AudioError) or len(got) <= SR // 2

    def test_a_wav_whose_riff_size_is_smaller_than_its_data(self):
        got = decode_bounded(wav_with_declared(9600, b"\x01\x00" * 4800, riff_size=4))
        assert isinstance(got, AudioError) or len(got) <= SR // 2

    @pytest.mark.parametrize("declared", [2**36 - 1, 24_000 * 3600 * 10])
    def test_a_flac_declaring_hours_is_refused_from_its_header(self, declared):
        got = decode_bounded(flac_with_declared_samples(declared))
        assert isinstance(got, AudioError) and "over the limit" in str(got)


class TestBombs:
    """Compressed audio is the audio kind of zip bomb: a few KiB that decode to hours."""

    @pytest.mark.parametrize("fmt, subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
    def test_ten_minutes_of_compressed_silence_is_refused_not_decoded_in_full(self, fmt, subtype):
        data = silence(600, fmt, subtype)
        assert len(data) < 12_000_000  # what the caller sends is small next to 600 s of float32 at 16 kHz
        got = decode_bounded(data)
        assert isinstance(got, AudioError) and "over the limit" in str(got), got

    @pytest.mark.parametrize("bomb", [gzip_bomb, zip_bomb], ids=["gzip", "zip"])
    def test_a_bomb_in_base64_is_bytes_we_never_inflate(self, bomb):
        data = bomb(200)  # 200 MiB of zeros, a few hundred KiB packed
        request = parse_request({"text": "Hi.", "ref_audio": base64.b64encode(data).decode(), "ref_text": "x"},
                                Limits(max_ref_bytes=5_000_000))
        assert request.ref_audio == RefBytes(data)
        got = decode_bounded(data)
        assert isinstance(got, AudioError) and "not audio we can decode" in str(got)

    def test_a_gzip_encoded_reference_url_is_fetched_raw_never_inflated(self, httpserver):
        packed = gzip_bomb(100)
        httpserver.expect_request("/voice.wav").respond_with_response(
            Response(packed, headers={"Content-Encoding": "gzip"}, content_type="audio/wav"))
        # as tests/serving/test_fetch.py does: a fake name resolving to the test server, that one port trusted
        def resolver(host, port, *args):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        body = fetch_reference(f"http://voices.example:{httpserver.port}/voice.wav", allow_http=True,
                               max_bytes=1_000_000, timeout_s=5.0, resolver=resolver,
                               trusted={("127.0.0.1", httpserver.port)})
        assert body == packed  # the cap applies to the bytes on the wire, and nothing inflates them
        assert isinstance(decode_bounded(body), AudioError)


@pytest.mark.slow
def test_a_running_worker_answers_hostile_references_with_failed_and_keeps_serving(server):
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    hostile = {
        "wav declaring 4 GiB": b64(wav_with_declared(0xFFFFFFF0, b"\x01\x00" * 10)),
        "flac declaring 10 h": b64(flac_with_declared_samples(24_000 * 3600 * 10)),
        "10 min of vorbis silence": b64(silence(600, "OGG", "VORBIS")),
        "gzip bomb": b64(gzip_bomb(100)),
        "zip bomb": b64(zip_bomb(100)),
        "random bytes": b64(np.random.default_rng(0).bytes(50_000)),
        "truncated mp3": b64(silence(20, "MP3", "MPEG_LAYER_III")[:777]),
    }
    for what, ref in hostile.items():
        began = time.monotonic()
        code, body = post(f"{server.base}/runsync", {"input": {"text": "Hi.", "ref_audio": ref, "ref_text": "x",
                                                               "nfe_step": 4}}, timeout=60)
        assert time.monotonic() - began < 30, what
        assert code == 200 and body["status"] in ("FAILED", "COMPLETED"), (what, body)
        if body["status"] == "FAILED":
            assert body["error"] and "Traceback" not in body["error"], (what, body)
        else:  # a truncated file may still hold a little audio
            assert body["output"]["audio"], what
    ok_ref = b64(np.asarray(
        (0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * SR) / SR) * 32767).astype("<i2")).tobytes())
    code, body = post(f"{server.base}/runsync", {"input": {
        "text": "Still serving.", "ref_audio": "data:audio/wav;base64," + b64(wav_with_declared(
            len(base64.b64decode(ok_ref)), base64.b64decode(ok_ref))), "ref_text": "A tone.", "nfe_step": 4}})
    assert body["status"] == "COMPLETED", body
    assert server.proc.poll() is None
