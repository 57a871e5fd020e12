"""Transcription of references sent without their words (F5-TTS's Whisper, through transformers' ASR
pipeline), loaded on first need, its transcripts kept on the volume. transformers is the optional ``asr``
extra and is imported only when a transcription is needed."""

from .model import OPTIONAL, REQUIRED, AsrFilesUnavailable, AsrSource, parse_source
from .transcriber import INSTALL_HINT, Transcriber, Transcript, judge

__all__ = ["Transcriber", "Transcript", "judge", "INSTALL_HINT", "AsrSource", "parse_source", "AsrFilesUnavailable",
           "REQUIRED", "OPTIONAL"]
