"""What a missing model file looks like in the report (the errors themselves are in ``f5_worker.errors``)."""

from __future__ import annotations

__all__ = ["Missing"]


class Missing:
    """One file that could not be made available: what, where we looked, and why."""

    def __init__(self, ref: str, searched: tuple[str, ...], reason: str):
        self.ref, self.searched, self.reason = ref, searched, reason

    def __str__(self) -> str:
        return f"{self.ref} ({self.reason}; looked in: {', '.join(self.searched) or 'nowhere'})"
