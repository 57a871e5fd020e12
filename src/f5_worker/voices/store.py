"""Reference voices by name: built in, stored on the volume, or OpenAI's names for the default voice.

Where a name is looked up, in order:

1. a voice stored through the API: one directory, published whole::

       <voices>/<name>/voice.json     {"name", "text", "transcribed", "seconds", "sample_rate", "created_at", "source"}
       <voices>/<name>/audio.wav      the reference as the engine takes it: 24 kHz mono float32, decoded and
                                      clipped as F5-TTS clips it (so it is never decoded or clipped again)

2. an operator's files, the older layout: ``<voices>/<name>.wav`` (or .flac/.mp3/.ogg/.opus) with
   ``<name>.txt`` holding its words (without it, the words are transcribed when the voice is used);
3. a built-in voice (``data/``: the example references F5-TTS ships, with their texts);
4. one of OpenAI's voice names (``alloy``, ``echo``...): the default voice (F5_WORKER_DEFAULT_VOICE).

Many workers may write one volume at once, and network volumes may not honour file locks,
so nothing here takes one. A new voice is written into a private staging directory
(``.incoming-*``), then renamed to its name in one step: a reader sees the whole voice or
nothing, and of two writers of one name the first rename wins and the second is told the
name is taken (renaming a directory onto a non-empty one fails). A deletion renames the
directory aside (``.deleted-*``) before removing it, so it too is one step. Leftovers of
writers that died are swept after an hour.

Names are 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, never
containing '..': a name is a file name, never a path, and never a hidden file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..serving.errors import RequestError, VoiceExists, VoiceNotFound, VoiceReadOnly

__all__ = ["Voice", "VoiceStore", "VOICE_NAME", "OPENAI_VOICES", "LEGACY_SUFFIXES", "check_name", "builtin_voices"]

VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# OpenAI's speech voices (https://platform.openai.com/docs/guides/text-to-speech): accepted as the default voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
LEGACY_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")
META, AUDIO = "voice.json", "audio.wav"
STAGING, DELETED = ".incoming-", ".deleted-"
STALE_AFTER_S = 3600.0
MODEL_SAMPLE_RATE = 24_000


@dataclass(frozen=True)
class Voice:
    id: str
    path: Path  # the audio file
    text: str | None  # the words spoken; None: transcribed when the voice is used
    kind: str  # "stored" | "file" | "builtin"
    transcribed: bool = False  # the text came from the ASR model, not from a person
    prepared: bool = False  # path holds the engine's samples already (a stored voice): no decoding or clipping
    seconds: float | None = None
    created_at: int | None = None  # Unix time; None: the file's modification time

    @property
    def builtin(self) -> bool:
        return self.kind == "builtin"

    def to_json(self) -> dict:
        """OpenAI's voice object (``id``, ``name``, ``object``, ``created_at``, ``type``) and what F5-TTS adds."""
        created = self.created_at
        if created is None:
            try:
                created = int(self.path.stat().st_mtime)
            except OSError:
                created = 0
        return {"id": self.id, "name": self.id, "object": "audio.voice", "created_at": created, "type": "audio_sample",
                "builtin": self.builtin, "text": self.text, "transcribed": self.transcribed,
                **({"seconds": self.seconds} if self.seconds is not None else {})}


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it can name a voice, else a ``RequestError`` that says why."""
    if not isinstance(name, str) or not name.strip():
        raise RequestError(f"{what} is required: 1-64 letters, digits, '.', '_' or '-'", field=what)
    name = name.strip()
    if not VOICE_NAME.fullmatch(name) or ".." in name:
        shown = name if len(name) <= 70 else name[:64] + "..."
        raise RequestError(f"{what} {shown!r} cannot name a voice: use 1-64 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit (no '/', no '..', no hidden names)", field=what)
    return name


@lru_cache(maxsize=1)
def builtin_voices() -> dict[str, Voice]:
    """The voices shipped in the package (``data/builtin.json``)."""
    data = resources.files(__package__) / "data"
    listing = json.loads((data / "builtin.json").read_text(encoding="utf-8"))
    return {name: Voice(name, Path(str(data / entry["file"])), entry["text"], "builtin")
            for name, entry in listing.items()}


class VoiceStore:
    def __init__(self, directory: Path, default_voice: str = "basic_ref_en"):
        self.directory = Path(directory)
        self.default_voice = default_voice
        self._swept = False

    # -- reading --------------------------------------------------------------------

    def _stored(self, name: str) -> Voice | None:
        folder = self.directory / name
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # not a voice (a published voice always has both files)
        audio = folder / AUDIO
        if not isinstance(meta, dict) or not audio.is_file():
            return None
        text = meta.get("text") if isinstance(meta.get("text"), str) and meta.get("text").strip() else None
        number = lambda key: meta.get(key) if isinstance(meta.get(key), (int, float)) else None  # noqa: E731
        created = number("created_at")
        return Voice(name, audio, text, "stored", transcribed=bool(meta.get("transcribed")), prepared=True,
                     seconds=number("seconds"), created_at=int(created) if created is not None else None)

    def _file(self, name: str) -> Voice | None:
        for suffix in LEGACY_SUFFIXES:
            path = self.directory / f"{name}{suffix}"
            if path.is_file():
                text_file = path.with_suffix(".txt")
                try:
                    text = text_file.read_text(encoding="utf-8").strip() or None
                except OSError:
                    text = None
                return Voice(name, path, text, "file")
        return None

    def get(self, name: str) -> Voice | None:
        """The voice called exactly ``name`` (stored, file, built in), or None. ``name`` must be valid."""
        return self._stored(name) or self._file(name) or builtin_voices().get(name)

    def resolve(self, name: str) -> Voice:
        """The voice ``name`` means, OpenAI's names included; ``VoiceNotFound`` lists the known ones."""
        name = check_name(name, "voice")
        voice = self.get(name)
        if voice is not None:
            return voice
        if name.lower() in OPENAI_VOICES:
            default = self.get(self.default_voice) if VOICE_NAME.fullmatch(self.default_voice) else None
            if default is not None:
                return default
            raise VoiceNotFound(f"voice {name!r} speaks with the default voice {self.default_voice!r} "
                                "(F5_WORKER_DEFAULT_VOICE), which is not a voice on this worker", field="voice")
        known = ", ".join(v.id for v in self.list()) or "none"
        raise VoiceNotFound(f"voice {name!r} is not stored on this worker; known voices: {known} "
                            f"(or one of OpenAI's names: {', '.join(OPENAI_VOICES)}); add one with "
                            "POST /v1/audio/voices or the voices.create action", field="voice")

    def list(self) -> list[Voice]:
        """Every voice: stored and file voices by name, then the built-in ones."""
        found: dict[str, Voice] = {}
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                name = entry.name
                voice = self._stored(name) if VOICE_NAME.fullmatch(name) and ".." not in name else None
            else:
                stem, suffix = os.path.splitext(entry.name)
                name = stem
                voice = (self._file(stem) if suffix in LEGACY_SUFFIXES and VOICE_NAME.fullmatch(stem)
                         and ".." not in stem else None)
            if voice is not None and name not in found:
                found[name] = voice
        for name, voice in builtin_voices().items():
            found.setdefault(name, voice)
        return sorted(found.values(), key=lambda v: (v.builtin, v.id))

    # -- writing --------------------------------------------------------------------

    def create(self, name: str, samples, text: str, *, transcribed: bool, source: dict | None = None) -> Voice:
        """Publish a voice: ``samples`` are the prepared reference (24 kHz mono float32), ``text`` its words."""
        import numpy as np
        import soundfile as sf

        name = check_name(name)
        self._refuse_taken(name)
        self._sweep()
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        seconds = round(len(samples) / MODEL_SAMPLE_RATE, 3)
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / f"{STAGING}{name}-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            with open(staging / AUDIO, "wb") as out:
                sf.write(out, samples, MODEL_SAMPLE_RATE, format="WAV", subtype="FLOAT")
                out.flush()
                os.fsync(out.fileno())
            created = int(time.time())
            meta = {"name": name, "text": text, "transcribed": transcribed, "seconds": seconds,
                    "sample_rate": MODEL_SAMPLE_RATE, "created_at": created, "source": source or {}}
            with open(staging / META, "w", encoding="utf-8") as out:
                json.dump(meta, out, ensure_ascii=False, indent=2)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.rename(staging, self.directory / name)  # one step; fails if another writer published first
            except OSError as exc:
                if (self.directory / name).exists():
                    raise VoiceExists(f"voice {name!r} already exists (another request stored it first); "
                                      "delete it first or pick another name", field="name") from exc
                raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return Voice(name, self.directory / name / AUDIO, text, "stored", transcribed=transcribed, prepared=True,
                     seconds=seconds, created_at=created)

    def _refuse_taken(self, name: str) -> None:
        if name in builtin_voices():
            raise VoiceExists(f"voice {name!r} is built in; pick another name", field="name")
        if self._stored(name) or self._file(name) or (self.directory / name).exists():
            raise VoiceExists(f"voice {name!r} already exists; delete it first or pick another name", field="name")

    def delete(self, name: str) -> Voice:
        """Remove a stored voice (one rename, then the files); built-in voices cannot be deleted."""
        name = check_name(name, "voice")
        voice = self._stored(name) or self._file(name)
        if voice is None:
            if name in builtin_voices():
                raise VoiceReadOnly(f"voice {name!r} is built in and cannot be deleted", field="voice")
            raise VoiceNotFound(f"voice {name!r} is not stored on this worker", field="voice")
        aside = self.directory / f"{DELETED}{name}-{uuid.uuid4().hex[:12]}"
        try:
            if voice.kind == "stored":
                os.rename(self.directory / name, aside)
            else:  # an operator's files: the audio goes first, so the voice is gone at once
                os.rename(voice.path, aside)
                with contextlib.suppress(OSError):
                    voice.path.with_suffix(".txt").unlink()
        except FileNotFoundError:
            raise VoiceNotFound(f"voice {name!r} is not stored on this worker (deleted meanwhile)",
                                field="voice") from None
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
        return voice

    def _sweep(self) -> None:
        """Remove what writers that died left behind (once per process; fresh ones may be live)."""
        if self._swept:
            return
        self._swept = True
        now = time.time()
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.directory):
                if entry.name.startswith((STAGING, DELETED)):
                    with contextlib.suppress(OSError):
                        if now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S:
                            if entry.is_dir(follow_symlinks=False):
                                shutil.rmtree(entry.path, ignore_errors=True)
                            else:
                                os.unlink(entry.path)
