"""Downloads through huggingface_hub, so the cache is the standard one other tools read.

huggingface_hub is imported here, lazily, after ``hubenv.apply`` has set the cache and
timeouts. It writes each blob to a unique ``*.incomplete`` file and renames it into
place, and its file lock only saves duplicate downloads; both hold on a shared volume.
"""

from __future__ import annotations

from pathlib import Path

from .catalog import HubFile

__all__ = ["download", "describe"]


def download(f: HubFile, cache_dir: Path, etag_timeout_s: float, force: bool = False) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(
            f.repo_id,
            f.filename,
            revision=f.revision,
            cache_dir=cache_dir,
            etag_timeout=etag_timeout_s,
            force_download=force,
        )
    )


def describe(exc: BaseException) -> str:
    """One line for the report: the error and, for 'not cached and unreachable', what cut us off."""
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    cause = exc.__cause__ or exc.__context__
    if cause is not None and type(exc).__name__ == "LocalEntryNotFoundError":
        text = f"hub unreachable ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
    return text
