"""Where the ASR model's files come from: the hub cache, like the F5-TTS model's, or a local directory.

``F5_WORKER_ASR_MODEL`` is one of:

- ``ORG/NAME[@REVISION]`` (default ``openai/whisper-large-v3-turbo``, F5-TTS's choice): the repo's files
  are made available by the same step that makes the F5-TTS model available (``models.ensure_models``):
  found in the hub cache or in RunPod's cached models (read in place), else downloaded with
  ``hf_hub_download`` unless offline; every file is checked before it is loaded and a broken one is
  moved aside. The transformers pipeline is then given the snapshot directory, so it never asks the hub.
- a directory (``/path``, ``./path``, ``~/path``, or any existing path) holding a model saved with
  ``save_pretrained``: loaded where it is.

A Whisper repo's files: ``REQUIRED`` must be there; ``OPTIONAL`` are taken when the repo has them
(a tokenizer comes as ``tokenizer.json`` or as ``vocab.json`` with ``merges.txt``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..models.catalog import HubFile
from ..settings import LOCAL_VOLUME, RUNPOD_HF_CACHE, Settings, env_name

__all__ = ["AsrSource", "parse_source", "model_directory", "REQUIRED", "OPTIONAL", "AsrFilesUnavailable"]

REQUIRED = ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json")
OPTIONAL = ("generation_config.json", "tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json",
            "special_tokens_map.json", "normalizer.json", "processor_config.json")


class AsrFilesUnavailable(Exception):
    """The ASR model's files could not be made available; the message says what was tried."""


@dataclass(frozen=True)
class AsrSource:
    name: str  # as configured
    repo_id: str | None = None
    revision: str = "main"
    path: Path | None = None  # a local directory


def parse_source(value: str) -> AsrSource:
    text = value.strip()
    if text.startswith(("/", ".", "~")) or (not text.startswith("hf://") and Path(text).expanduser().is_dir()):
        return AsrSource(text, path=Path(text).expanduser())
    repo = text.removeprefix("hf://")
    repo, _, revision = repo.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise AsrFilesUnavailable(f"{env_name('asr_model')}={value!r} is not ORG/NAME[@REVISION], a directory, or off")
    return AsrSource(text, repo_id=repo, revision=revision or "main")


def _ensure(settings: Settings, source: AsrSource, names: tuple[str, ...]):
    from ..models import ModelsConfig, ensure_models

    files = tuple(HubFile(source.repo_id, name, f"asr {name}", source.revision) for name in names)
    return ensure_models(ModelsConfig(
        cache_dir=settings.hub_cache,
        work_dir=settings.root / "models",
        files=files,
        read_caches=(RUNPOD_HF_CACHE,),
        fallback_cache_dir=LOCAL_VOLUME.expanduser() / "huggingface-cache" / "hub",
        offline=settings.offline,
        etag_timeout_s=min(10.0, settings.download_timeout_s),
        download_timeout_s=settings.download_timeout_s,
    ))


def model_directory(settings: Settings, source: AsrSource) -> tuple[Path, dict]:
    """A directory ``transformers`` can load the model from, and what was done to get it (for the logs)."""
    if source.path is not None:
        if not (source.path / "config.json").is_file():
            raise AsrFilesUnavailable(f"{env_name('asr_model')}={source.name!r}: {source.path} holds no "
                                      "config.json; point it at a directory saved with save_pretrained")
        return source.path, {"source": "local", "path": str(source.path)}
    if not settings.offline:
        # The bootstrap declares the process offline once the F5-TTS model is all cached; the ASR model,
        # fetched later and only when needed, may still need the hub. ensure_models sets it back when done.
        from ..models import hubenv

        hubenv.apply(hubenv.hub_env(offline=False))
    required = _ensure(settings, source, REQUIRED)
    if not required.ok:
        missing = "; ".join(str(m) for m in required.missing)
        raise AsrFilesUnavailable(
            f"the ASR model {source.name} is unavailable: {missing}. Let the worker reach the hub (unset "
            f"{env_name('offline')}), put the model in the hub cache, point {env_name('asr_model')} at a local "
            "directory, or send ref_text with each reference")
    optional = _ensure(settings, source, OPTIONAL)
    paths = [Path(p) for p in (*required.paths.values(), *optional.paths.values())]
    report = {"source": "hub cache", "cache_dir": required.cache_dir,
              "files": [{"file": f.ref, "from": f.source, "check": f.check} for f in required.files + optional.files
                        if f.path]}
    parents = {p.parent for p in paths}
    if len(parents) == 1:
        return parents.pop(), report
    # Files from different snapshots (a migrated one beside a downloaded one): gather links in one directory.
    return _link_farm(settings.root / "cache" / "asr-models", paths), report


def _link_farm(base: Path, paths: list[Path]) -> Path:
    key = hashlib.sha256("\n".join(sorted(map(str, paths))).encode()).hexdigest()[:16]
    target = base / key
    if target.is_dir():
        return target
    staging = base / f".incoming-{key}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for path in paths:
            os.symlink(path.resolve(), staging / path.name)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
