"""Reference voices by name: built in (F5-TTS's examples), stored on the volume through the API, or an
operator's files; OpenAI's voice names speak with the default voice. See ``store``."""

from .store import LEGACY_SUFFIXES, OPENAI_VOICES, VOICE_NAME, Voice, VoiceStore, builtin_voices, check_name

__all__ = ["Voice", "VoiceStore", "VOICE_NAME", "OPENAI_VOICES", "LEGACY_SUFFIXES", "check_name", "builtin_voices"]
