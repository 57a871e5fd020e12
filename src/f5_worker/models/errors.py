"""Errors of the model cache (to move into ``f5_worker.errors`` when it is wired in).

    F5WorkerError
    ├── ConfigError(ValueError)
    │   └── BadModelRef                    F5_WORKER_MODEL / _CKPT / _VOCAB names nothing we can fetch
    └── ModelUnavailable(FileNotFoundError) a file the worker must load is missing or broken
                                            and could not be fetched; names each file and every place looked

Foreign errors (huggingface_hub's ``LocalEntryNotFoundError``, ``EntryNotFoundError``,
HTTP errors, ``OSError`` from the volume) are caught where a file is fetched and end
up, as text, in the ``reason`` of the file that failed.
"""

from __future__ import annotations

from ..errors import ConfigError, F5WorkerError

__all__ = ["BadModelRef", "ModelUnavailable", "Missing"]


class BadModelRef(ConfigError):
    def __init__(self, setting: str, value: str, detail: str):
        self.setting, self.value = setting, value
        super().__init__(
            f"F5_WORKER_{setting}={value!r}: {detail}; give a local path, or a hub file as "
            "ORG/REPO/PATH/IN/REPO (hf:// prefix allowed), e.g. SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
        )


class Missing:
    """One file that could not be made available: what, where we looked, and why."""

    def __init__(self, ref: str, searched: tuple[str, ...], reason: str):
        self.ref, self.searched, self.reason = ref, searched, reason

    def __str__(self) -> str:
        return f"{self.ref} ({self.reason}; looked in: {', '.join(self.searched) or 'nowhere'})"


class ModelUnavailable(F5WorkerError, FileNotFoundError):
    def __init__(self, missing: list[Missing]):
        self.missing = missing
        super().__init__(
            "model files unavailable: " + "; ".join(str(m) for m in missing)
            + ". Put them in the hub cache (see README: Model cache), let the worker reach the hub "
            "(unset F5_WORKER_OFFLINE, check HF_ENDPOINT and the network), or point F5_WORKER_CKPT at a local file."
        )
