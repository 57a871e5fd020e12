"""Which files the worker loads, described once, as data.

Confirmed against F5-TTS's own code (``src/f5_tts/api.py``, class ``F5TTS``; its
``infer/utils_infer.py`` ``load_vocoder``), read through the code search of SWivid/F5-TTS:

- default model ``F5TTS_v1_Base``: ``hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors``;
- ``F5TTS_Base`` (vocos): ``hf://SWivid/F5-TTS/F5TTS_Base/model_1200000.safetensors``;
- vocab: ``<model>/vocab.txt`` beside each checkpoint (the model card lists
  ``hf://SWivid/F5-TTS/F5TTS_v1_Base/vocab.txt``; ``F5TTS_Base/vocab.txt`` is fetched the same
  way by F5-TTS's Gradio app and by others).
  The f5-tts package also ships ``infer/examples/vocab.txt``, which ``load_model`` uses
  when given no vocab; the repo's ``data/Emilia_ZH_EN_pinyin/vocab.txt`` is not in the wheel.
- vocoder: ``charactr/vocos-mel-24khz``, files ``config.yaml`` and ``pytorch_model.bin``
  (``load_vocoder`` calls ``hf_hub_download`` for both, or reads them from a local dir).

F5-TTS also ships configs ``F5TTS_Small``, ``F5TTS_v1_Small``, ``E2TTS_Small`` and
``F5TTS_Base_bigvgan`` (a ``.pt`` for the BigVGAN vocoder); none has a vocos checkpoint
that ``F5TTS`` downloads, so they are left out: name one with F5_WORKER_CKPT instead.
``E2TTS_Base`` (``hf://SWivid/E2-TTS/E2TTS_Base/model_1200000.safetensors``) is left out too: its
backbone is F5-TTS's UNetT, not a DiT, and the worker runs DiTs only (``engine.nn``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadModelRef

__all__ = ["HubFile", "LocalFile", "MODELS", "VOCOS", "DEFAULT_MODEL", "parse_ref", "plan"]

# File types that the hub's default .gitattributes stores in LFS: the cache names their blob by sha256.
LFS_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt"})
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubFile:
    """A file of a Hugging Face model repo, at a revision (branch, tag or commit)."""

    repo_id: str
    filename: str
    role: str
    revision: str = "main"

    @property
    def lfs(self) -> bool:
        return Path(self.filename).suffix in LFS_SUFFIXES

    @property
    def ref(self) -> str:
        rev = "" if self.revision == "main" else f"@{self.revision}"
        return f"{self.repo_id}{rev}/{self.filename}"

    @property
    def pinned(self) -> bool:
        return bool(_COMMIT.match(self.revision))


@dataclass(frozen=True)
class LocalFile:
    """A file given by path: verified where it is, never copied."""

    path: Path
    role: str

    @property
    def ref(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Model:
    checkpoint: HubFile
    vocab: HubFile


def _model(repo_id: str, folder: str, step: int) -> Model:
    return Model(
        HubFile(repo_id, f"{folder}/model_{step}.safetensors", "checkpoint"),
        HubFile(repo_id, f"{folder}/vocab.txt", "vocab"),
    )


DEFAULT_MODEL = "F5TTS_v1_Base"
MODELS: dict[str, Model] = {
    "F5TTS_v1_Base": _model("SWivid/F5-TTS", "F5TTS_v1_Base", 1250000),
    "F5TTS_Base": _model("SWivid/F5-TTS", "F5TTS_Base", 1200000),
}
VOCOS = (
    HubFile("charactr/vocos-mel-24khz", "config.yaml", "vocoder_config"),
    HubFile("charactr/vocos-mel-24khz", "pytorch_model.bin", "vocoder_weights"),
)


def parse_ref(setting: str, value: str, role: str) -> HubFile | LocalFile:
    """``/a/path``, ``./rel`` or an existing path is local; ``[hf://]ORG/REPO[@REV]/PATH`` is a hub file."""
    text = value.strip()
    if not text:
        raise BadModelRef(setting, value, "it is empty")
    if not text.startswith("hf://") and (text.startswith(("/", ".", "~")) or Path(text).exists()):
        return LocalFile(Path(text).expanduser(), role)
    parts = text.removeprefix("hf://").split("/")
    if len(parts) < 3 or not all(parts):
        raise BadModelRef(setting, value, "a hub file needs ORG/REPO/FILE")
    repo, _, revision = parts[1].partition("@")
    return HubFile(f"{parts[0]}/{repo}", "/".join(parts[2:]), role, revision or "main")


def plan(model: str = DEFAULT_MODEL, ckpt: str | None = None, vocab: str | None = None) -> tuple[HubFile | LocalFile, ...]:
    """The files to make available, in load order: checkpoint, vocab, vocoder config and weights."""
    if model not in MODELS:
        raise BadModelRef("MODEL", model, f"not one of {', '.join(MODELS)}")
    chosen = MODELS[model]
    checkpoint = parse_ref("CKPT", ckpt, "checkpoint") if ckpt else chosen.checkpoint
    vocab_file = parse_ref("VOCAB", vocab, "vocab") if vocab else chosen.vocab
    return (checkpoint, vocab_file, *VOCOS)
