"""The bootstrap's model step: make every file the worker will load be present, whole, and found offline.

For each file, in order, until one verifies:

1. the hub cache (``cache_dir``), then other hub caches used where they are
   (``read_caches``: RunPod's cached models, read-only). A copy that fails
   verification is moved aside (quarantined) when the cache is ours, and never loaded;
2. a legacy place (``legacy_dirs``): copied into the hub cache atomically, verified;
3. the hub, through ``hf_hub_download`` -- unless ``offline``; a download that fails
   verification is moved aside and fetched once more.

Nothing here imports huggingface_hub until step 3 is needed; when every file was
found locally, ``HF_HUB_OFFLINE=1`` is set first, so neither this step nor the
libraries loaded later (F5-TTS, vocos) touch the network. A missing file is not an
exception here: the report records it, with every place looked, and
``ModelsReport.raise_if_failed`` raises ``ModelUnavailable`` for the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cache, fetch, hubenv, legacy
from .catalog import HubFile, LocalFile
from ..errors import ModelUnavailable
from .errors import Missing
from ..fsutil import sweep_incomplete
from .integrity import verify

__all__ = ["ModelsConfig", "FileOutcome", "ModelsReport", "ensure_models"]


@dataclass(frozen=True)
class ModelsConfig:
    cache_dir: Path  # the hub cache to use and fill (HF_HUB_CACHE)
    work_dir: Path  # ours: <volume>/f5-worker/models (quarantine/, verified/)
    files: tuple[HubFile | LocalFile, ...]
    read_caches: tuple[Path, ...] = ()  # other hub caches, used in place, never written
    legacy_dirs: tuple[Path, ...] = ()  # places whose files are copied into cache_dir
    fallback_cache_dir: Path | None = None  # used when cache_dir cannot be written
    offline: bool = False  # never contact the hub
    etag_timeout_s: float = 10.0
    download_timeout_s: float = 30.0


@dataclass(frozen=True)
class FileOutcome:
    ref: str
    role: str
    path: str | None  # what to load; None when unavailable
    source: str  # "cache ...", "migrated from ...", "downloaded", "local", or "missing"
    check: str  # how it was verified: sha256 | git-sha1 | stamp | format
    seconds: float
    trace: tuple[str, ...] = ()  # copies rejected on the way, and why


@dataclass(frozen=True)
class ModelsReport:
    cache_dir: str
    offline: bool  # HF_HUB_OFFLINE=1 is in force for the rest of the process
    files: tuple[FileOutcome, ...]
    warnings: tuple[str, ...] = ()
    missing: tuple[Missing, ...] = field(default=(), repr=False)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def paths(self) -> dict[str, str]:
        """role -> path: checkpoint, vocab, vocoder_config, vocoder_weights."""
        return {f.role: f.path for f in self.files if f.path}

    def raise_if_failed(self) -> None:
        if self.missing:
            raise ModelUnavailable(list(self.missing))

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "cache_dir": self.cache_dir,
            "offline": self.offline,
            "files": [vars(f) | {"trace": list(f.trace)} for f in self.files],
            "warnings": list(self.warnings),
            "error": str(ModelUnavailable(list(self.missing))) if self.missing else None,
            "seconds": self.seconds,
        }


class _Run:
    def __init__(self, cfg: ModelsConfig, cache_dir: Path, writable: bool, read_caches: tuple[Path, ...]):
        self.cfg, self.cache_dir, self.writable, self.read_caches = cfg, cache_dir, writable, read_caches
        self.stamps = cfg.work_dir / "verified"
        self.quarantine = cfg.work_dir / "quarantine"
        self.how = ""  # how the last file found was verified

    def searched(self) -> tuple[str, ...]:
        return (str(self.cache_dir), *map(str, self.read_caches), *map(str, self.cfg.legacy_dirs))

    def _check(self, entry: cache.Entry, f: HubFile, trace: list[str], ours: bool) -> bool:
        result = verify(entry.blob, f.filename, entry.blob_name, self.stamps)
        if result.ok:
            self.how = result.how
            return True
        note = cache.quarantine(entry, self.quarantine) if ours else "left in place (not our cache)"
        trace.append(f"{entry.pointer}: {result.reason}; {note}")
        return False

    def local(self, f: HubFile | LocalFile, trace: list[str]) -> tuple[str, str] | None:
        """(path, source) of a verified local copy, bringing a legacy one into the cache; None if none."""
        if isinstance(f, LocalFile):
            result = verify(f.path, f.path.name)
            if result.ok:
                self.how = result.how
                return str(f.path), "local"
            trace.append(f"{f.path}: {result.reason}")
            return None
        for where in (self.cache_dir, *self.read_caches):
            ours = where == self.cache_dir and self.writable
            for entry in cache.locate(where, f):
                if self._check(entry, f, trace, ours):
                    return str(entry.pointer), f"cache {where}"
        for cand in legacy.candidates(self.cfg.legacy_dirs, f):
            if not self.writable:  # nowhere to copy it: use it where it is, if it is whole
                result = verify(cand.path, f.filename, cand.blob_name)
                if result.ok:
                    self.how = result.how
                    return str(cand.path), f"{cand.origin} (in place: cache not writable)"
                trace.append(f"{cand.path}: {result.reason}")
                continue
            try:
                entry = cache.publish(self.cache_dir, f, cand.path, cand.blob_name)
            except (OSError, ValueError) as exc:
                trace.append(f"{cand.origin}: copy of {cand.path} failed: {exc}")
                continue
            if self._check(entry, f, trace, True):
                return str(entry.pointer), f"migrated from {cand.origin}"
        return None

    def download(self, f: HubFile, trace: list[str]) -> tuple[str | None, fetch.HubFailure | None]:
        """(path, None) once a download verifies; (None, why) when the hub failed; (None, None) when what it
        sent twice failed verification."""
        for force in (False, True):
            try:
                entry = cache.entry_at(fetch.download(f, self.cache_dir, self.cfg.etag_timeout_s, force))
            except Exception as exc:  # huggingface_hub's errors are many; each becomes a line of the report
                failure = fetch.classify(exc)
                trace.append(f"hub: {failure.text}")
                return None, failure
            if self._check(entry, f, trace, True):
                return str(entry.pointer), None
        return None, None


def _choose_cache(cfg: ModelsConfig, warnings: list[str]) -> tuple[Path, bool, tuple[Path, ...]]:
    read = tuple(p for p in cfg.read_caches if p != cfg.cache_dir)
    why = cache.writable(cfg.cache_dir)
    if why is None:
        return cfg.cache_dir, True, read
    fallback = cfg.fallback_cache_dir
    if fallback is not None and cache.writable(fallback) is None:
        warnings.append(f"hub cache {cfg.cache_dir} is not writable ({why}); using {fallback}, reading the other in place")
        return fallback, True, (cfg.cache_dir, *read)
    warnings.append(f"hub cache {cfg.cache_dir} is not writable ({why}); nothing can be migrated or downloaded")
    return cfg.cache_dir, False, read


def ensure_models(cfg: ModelsConfig) -> ModelsReport:
    start = time.monotonic()
    warnings: list[str] = []
    cache_dir, writable, read_caches = _choose_cache(cfg, warnings)
    env = hubenv.hub_env(cache_dir, etag_timeout_s=cfg.etag_timeout_s, download_timeout_s=cfg.download_timeout_s)
    if cfg.offline:
        env["HF_HUB_OFFLINE"] = "1"
    if note := hubenv.apply(env):
        warnings.append(note)
    run = _Run(cfg, cache_dir, writable, read_caches)
    if writable:  # what killed writers (ours or huggingface_hub's) left behind
        sweep_incomplete(cache_dir, "models--*/blobs/*.incomplete")

    found: list[tuple[HubFile | LocalFile, str | None, str, list[str], float, str]] = []
    for f in cfg.files:
        t0, trace = time.monotonic(), []
        run.how = ""
        hit = run.local(f, trace)
        path, source = hit if hit else (None, "missing")
        found.append((f, path, source, trace, time.monotonic() - t0, run.how))

    needs_hub = [i for i, item in enumerate(found) if item[1] is None and isinstance(item[0], HubFile)]
    hub_asked: set[int] = set()  # files whose trace says what the hub did (or why it was not asked)
    if not needs_hub:
        hubenv.apply({"HF_HUB_OFFLINE": "1"})  # before anything imports huggingface_hub: no HEAD requests later
    elif not cfg.offline and writable:
        unreachable: tuple[fetch.HubFailure, str] | None = None  # the failure, and the file it happened on
        for i in needs_hub:
            f, _, _, trace, seconds, _ = found[i]
            t0 = time.monotonic()
            run.how = ""
            hub_asked.add(i)
            if unreachable:  # huggingface_hub backs off for ~25 s before it gives up: once is enough
                trace.append(f"hub: not asked, hub unreachable for {unreachable[1]}")
                path = None
            else:
                path, failure = run.download(f, trace)
                if failure is not None and failure.unreachable:
                    unreachable = (failure, f.ref)
            found[i] = (f, path, "downloaded" if path else "missing", trace, seconds + time.monotonic() - t0, run.how)

    outcomes, missing = [], []
    for i, (f, path, source, trace, seconds, how) in enumerate(found):
        outcomes.append(FileOutcome(f.ref, f.role, path, source, how, round(seconds, 3), tuple(trace)))
        if path is None:
            reason = trace[-1] if trace else ("offline" if cfg.offline else "not found")
            if isinstance(f, HubFile) and (cfg.offline or not writable) and i not in hub_asked:
                reason = f"{reason}; the hub was not asked ({'offline' if cfg.offline else 'cache not writable'})"
            missing.append(Missing(f.ref, run.searched() + (("the hub",) if isinstance(f, HubFile) else ()), reason))
    offline = not missing
    if offline and needs_hub:
        hubenv.apply({"HF_HUB_OFFLINE": "1"})  # everything is here now
    return ModelsReport(str(cache_dir), offline or cfg.offline, tuple(outcomes), tuple(warnings), tuple(missing),
                        round(time.monotonic() - start, 3))
