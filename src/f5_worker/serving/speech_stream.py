"""OpenAI's streamed speech: the body sent as each text chunk is synthesised.

``stream_format: "audio"`` sends the encoded bytes themselves (pcm, wav with a streaming header,
mp3, opus: ``stream_encode``); ``"sse"`` sends OpenAI's server-sent events,
``speech.audio.delta`` with base64 pieces, then ``speech.audio.done``. The reference is prepared
before the response starts, so a bad voice is a 400, not a broken stream. A client that goes
away cancels the job: its text chunks not yet sampled leave their batches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import AsyncIterator

from ..log import event, get_logger
from . import audio
from .formats import MODEL_SAMPLE_RATE
from .request import SynthesisRequest
from .stream_encode import StreamEncoder

__all__ = ["SpeechStream"]

log = get_logger("serving.stream")


class SpeechStream:
    def __init__(self, service, synthesis: SynthesisRequest, *, sse: bool,
                 admission: contextlib.AbstractContextManager | None = None):
        self.service, self.synthesis, self.sse = service, synthesis, sse
        self._admission = admission or contextlib.nullcontext()
        self._held = contextlib.ExitStack()  # the admission, held from open() until the body ends
        self.cancel = threading.Event()
        self.encoder = StreamEncoder(synthesis.output_format, MODEL_SAMPLE_RATE)  # ValueError: not streamable
        self._waves = None

    async def open(self) -> SpeechStream:
        """Prepare the job (its references, their words, its [voice] segments); raises ``ServingError`` for bad
        input, before any byte is sent."""
        service = self.service
        self._held.enter_context(self._admission)
        try:
            job = await asyncio.to_thread(service.prepare, self.synthesis, self.cancel.is_set)
        except BaseException:
            self._held.close()
            raise
        self._waves = service.waves(job, self.cancel.is_set, first_alone=True)
        return self

    async def body(self) -> AsyncIterator[bytes]:
        made = 0
        try:
            while (wave := await asyncio.to_thread(next, self._waves, None)) is not None:
                made += len(wave)
                audio.check_output_duration(made, MODEL_SAMPLE_RATE, self.service.config.limits.max_output_seconds)
                if data := self.encoder.feed(wave):
                    yield self._frame(data)
            if data := self.encoder.finish():
                yield self._frame(data)
            if self.sse:
                chars = len(self.synthesis.text)  # F5-TTS has no tokens: characters stand in for them
                yield _event({"type": "speech.audio.done",
                              "usage": {"input_tokens": chars, "output_tokens": 0, "total_tokens": chars}})
        except Exception as exc:  # the status line is sent: the stream can only end, saying why where it can
            event(log, "stream ended early", phase="serve", error=f"{type(exc).__name__}: {exc}")
            if self.sse:
                yield _event({"type": "error", "error": {"message": str(exc), "type": "server_error"}})
        finally:
            self.cancel.set()  # a client gone, or the job over: chunks not yet sampled are dropped
            self._held.close()
            try:
                self._waves.close()
            except ValueError:  # running on a thread right now: the cancel flag ends it within 50 ms
                pass

    def _frame(self, data: bytes) -> bytes:
        if not self.sse:
            return data
        return _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
