"""Downloads through huggingface_hub, so the cache is the standard one other tools read.

huggingface_hub is imported here, lazily, after ``hubenv.apply`` has set the cache and
timeouts. It writes each blob to a unique ``*.incomplete`` file and renames it into
place, and its file lock only saves duplicate downloads; both hold on a shared volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import HubUnreachable
from .catalog import HubFile

__all__ = ["download", "describe", "classify", "HubFailure"]


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


@dataclass(frozen=True)
class HubFailure:
    """Why one hub download failed: the report's line, and whether the hub itself was unreachable
    (then the other files are not asked for: huggingface_hub backs off ~25 s before it gives up)."""

    text: str
    unreachable: bool


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


def classify(exc: BaseException) -> HubFailure:
    """A hub download's exception as data, decided by its type.

    huggingface_hub raises ``LocalEntryNotFoundError`` *chained from* the connection error when the
    file is not cached and the hub cannot be reached (offline mode raises it with no cause); a
    ``HubUnreachable`` or a bare connection error or timeout means the same.
    """
    from huggingface_hub.errors import LocalEntryNotFoundError

    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, HubUnreachable):
        where = f" at {exc.endpoint}" if exc.endpoint else ""
        return HubFailure(f"hub unreachable{where} ({exc.cause})", True)
    if isinstance(exc, LocalEntryNotFoundError) and cause is not None:
        return HubFailure(f"hub unreachable ({type(cause).__name__}: {_first_line(cause)})".replace(": )", ")"), True)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return HubFailure(f"hub unreachable ({type(exc).__name__}: {_first_line(exc)})".replace(": )", ")"), True)
    return HubFailure(f"{type(exc).__name__}: {_first_line(exc)}".rstrip(": "), False)


def describe(exc: BaseException) -> str:
    """One line for the report: the error and, for 'not cached and unreachable', what cut us off."""
    return classify(exc).text
