"""A flash_attn the base environment already has: hidden until it passes the same checks as a download.

The image (or whoever built the environment) may have installed flash-attn into site-packages.
Nothing says it matches this runtime: a wheel built for another torch fails to import, a damaged
extension takes the interpreter down. So it is treated like a downloaded wheel: the bootstrap hides
it at once (cheap: it looks at files, imports nothing), the background step verifies it in a child
(``install.verify(..., in_place=True)``) before any download, and only a pass unhides it.

Hidden means, for the life of the process:

- in this process, a ``sys.meta_path`` finder refuses ``flash_attn``, ``flash_attn.*`` and
  ``flash_attn_2_cuda`` when they would come from the hidden copy (``ModuleNotFoundError``, saying
  why); a verified install activated later (``install.activate``) imports normally;
- in child processes, a shadow directory goes first on ``PYTHONPATH``: its ``flash_attn`` and
  ``flash_attn_2_cuda`` raise ``ImportError`` when imported, so a child that tries fails cleanly
  instead of crashing on the broken copy.

``find`` never reports one of the worker's own installs (under ``<root>/flash-attn``): those are
published only after verification.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.machinery
import importlib.metadata
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Found", "find", "hide", "unhide", "hidden", "shadow_dir", "MODULES", "SOURCE"]

MODULES = ("flash_attn", "flash_attn_2_cuda")
SOURCE = "base-env"  # the candidate's source in attempts, plans and the verdict
WHERE = "base environment"

_SHADOW_INIT = '''"""Placed by f5-worker: the flash_attn in this environment is hidden until it passes verification."""
raise ImportError({message!r})
'''


@dataclass(frozen=True)
class Found:
    """A flash_attn importable from the base environment (not one of the worker's installs)."""

    site: Path  # the directory it is imported from (site-packages)
    origin: str  # what ``import flash_attn`` would load
    version: str | None  # from its dist-info, read without importing it

    @property
    def label(self) -> str:
        return f"flash_attn {self.version or '(version unknown)'} in the {WHERE} ({self.site})"

    def to_json(self) -> dict:
        return {"where": WHERE, "site": str(self.site), "origin": self.origin, "version": self.version}


def _inside(path: Path, parents: Iterable[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == p or p in resolved.parents for p in parents)


def _version_at(site: Path) -> str | None:
    """flash-attn's version from its dist-info (or egg-info) in ``site``: one directory listing, no import."""
    for pattern in ("flash_attn-*.dist-info", "flash_attn-*.egg-info"):
        for info in sorted(site.glob(pattern)):
            with contextlib.suppress(OSError, ValueError):
                version = importlib.metadata.Distribution.at(info).version
                if version:
                    return version
    return None


def _published_site(entry: Path) -> bool:
    """One of the worker's published installs (``<installs>/<wheel>/site`` beside its ``install.json``), on
    whatever volume: verified before it was published, so never the base environment's."""
    return entry.name == "site" and (entry.parent / "install.json").is_file()


def find(exclude: Iterable[Path] = (), path: Sequence[str] | None = None) -> Found | None:
    """The flash_attn that ``import flash_attn`` would load from ``path`` (default ``sys.path``), skipping
    entries inside ``exclude`` (the worker's own installs); None when there is none. Imports nothing."""
    excluded = [Path(p).resolve() for p in exclude]
    if _state.shadow is not None:
        excluded.append(_state.shadow.resolve())
    entries = [e for e in (sys.path if path is None else path)
               if not (e and (_inside(Path(e), excluded) or _published_site(Path(e))))]
    for name in MODULES:
        spec = importlib.machinery.PathFinder.find_spec(name, entries)
        if spec is None or _namespace(spec):
            continue
        if spec.submodule_search_locations:  # a package (or a namespace package): site-packages/flash_attn/
            where = Path(list(spec.submodule_search_locations)[0])
        else:  # the extension module alone: site-packages/flash_attn_2_cuda.*.so
            where = Path(spec.origin)
        site = where.parent
        return Found(site=site, origin=str(spec.origin or where), version=_version_at(site))
    return None


def _namespace(spec: importlib.machinery.ModuleSpec) -> bool:
    """A directory without ``__init__.py``: no flash-attn 2 (its package is a regular one). FlashAttention-4's
    wheel ships ``flash_attn/cute/`` alone, which makes one; ``f5_worker.fa4`` checks that in its own child."""
    return spec.submodule_search_locations is not None and spec.origin in (None, "namespace")


class _Refuse:
    """A meta path finder that refuses the hidden flash_attn, and only it."""

    def __init__(self, found: Found, message: str):
        self.found, self.message = found, message
        self.site = found.site.resolve()

    def find_spec(self, fullname: str, path=None, target=None):
        top = fullname.partition(".")[0]
        if top not in MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        where = spec.origin if spec and spec.origin else (list(spec.submodule_search_locations or [None])[0] if spec else None)
        if where is not None and _inside(Path(where), [self.site]):
            raise ModuleNotFoundError(self.message, name=fullname)
        return None  # a verified install elsewhere on the path: let the normal finders load it

    def invalidate_caches(self) -> None:
        pass


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.found: Found | None = None
        self.finder: _Refuse | None = None
        self.shadow: Path | None = None


_state = _State()


def _message(found: Found, why: str) -> str:
    return (f"{found.label} is hidden by f5-worker: {why}. The worker runs on PyTorch SDPA or on a verified "
            "flash-attn install instead (see the bootstrap report's flash_attn section)")


def hide(found: Found, why: str = "it has not passed verification for this runtime") -> None:
    """Hide ``found`` from this process and from every child it starts, until ``unhide``. Idempotent."""
    with _state.lock:
        message = _message(found, why)
        if _state.finder is not None:
            _state.finder.message = message
            _write_shadow(_state.shadow, message)
            return
        shadow = Path(tempfile.mkdtemp(prefix="f5-worker-hidden-flash-attn-"))
        _write_shadow(shadow, message)
        atexit.register(shutil.rmtree, shadow, True)
        finder = _Refuse(found, message)
        sys.meta_path.insert(0, finder)
        # A copy imported before this point (it did not crash) must not serve later imports.
        for name in [m for m in sys.modules if m.partition(".")[0] in MODULES]:
            module = sys.modules[name]
            origin = getattr(module, "__file__", None)
            if origin and _inside(Path(origin), [finder.site]):
                del sys.modules[name]
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join([str(shadow), *paths])
        importlib.invalidate_caches()
        _state.found, _state.finder, _state.shadow = found, finder, shadow


def _write_shadow(shadow: Path, message: str) -> None:
    package = shadow / "flash_attn"
    package.mkdir(parents=True, exist_ok=True)
    text = _SHADOW_INIT.format(message=message)
    for path in (package / "__init__.py", shadow / "flash_attn_2_cuda.py"):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def unhide() -> None:
    """Make the hidden flash_attn importable again (it passed verification). No-op when nothing is hidden."""
    with _state.lock:
        if _state.finder is None:
            return
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(_state.finder)
        shadow = str(_state.shadow)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != shadow)
        importlib.invalidate_caches()
        shutil.rmtree(shadow, ignore_errors=True)
        _state.found = _state.finder = _state.shadow = None


def hidden() -> Found | None:
    """What is hidden now, if anything."""
    return _state.found


def shadow_dir() -> Path | None:
    """The shadow directory on ``PYTHONPATH`` while something is hidden (a verification child drops it)."""
    return _state.shadow
