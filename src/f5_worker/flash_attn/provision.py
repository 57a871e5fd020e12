"""Make a verified flash-attn importable for this runtime, or say why SDPA is used instead.

``provision(settings)`` is the bootstrap step. A flash_attn the base environment already
has is hidden first (``baseenv``: imports nothing), whatever happens next. A warm start finds
the install it published before for this runtime and activates it: no network, no pip, no
torch import. A cold start probes the runtime fully, tries the base environment's flash_attn
(verified in a child, where it is; unhidden only if it passes), then resolves a plan and tries
its candidates in order (fetch once onto the volume, stage, verify in a child, publish,
activate) until one works. Whatever goes wrong ends in a verdict that names the reason and the
backend to use; only ``F5_WORKER_FLASH_ATTN=require`` turns a failure into an error.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from .. import net
from ..attention_choice import AttentionChoice
from ..errors import (ChecksumMismatch, CorruptWheel, F5WorkerError, FlashAttnRequired, NotAFlashAttnWheel,
                      VerificationFailed, VerificationTimeout)
from ..fsutil import sweep_incomplete, write_json_atomic
from ..lease import Lease
from ..log import event, get_logger, phase
from ..runtime import probe
from ..runtime.fingerprint import Fingerprint
from ..settings import MAX_WHEEL_BYTES, Settings
from . import baseenv, install, sources
from .resolver import Candidate, Plan, VersionRequest, check_environment, resolve

__all__ = ["Verdict", "Attempt", "provision", "lookup_published", "plan_for", "hide_base_env"]

log = get_logger("flash_attn")
_PUBLISHED_WINS = "not verified: a verified install published on the volume for this runtime is used instead"
LEASE_WAIT_MAX_S = 1800.0
LEASE_POLL_S = 1.0


@dataclass
class Attempt:
    wheel: str
    source: str
    outcome: str  # "active" | "failed"
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Verdict:
    """What the bootstrap decided about attention, and why: the report's ``flash_attn`` section."""

    mode: str
    backend: str  # "flash_attn" | "sdpa": what F5-TTS's attn_backend should be
    reason: str | None  # why flash-attn is not used; None when it is
    warm: bool = False  # activated from an install published by an earlier start
    wheel: str | None = None
    version: str | None = None
    source: str | None = None
    site: str | None = None
    runtime_key: str | None = None
    # which kernel runs which kind of batch; what the engine is given
    attention: AttentionChoice = field(default_factory=lambda: AttentionChoice.sdpa("flash-attn not decided"))
    verification: dict | None = None
    attempts: list[Attempt] = field(default_factory=list)
    plan: dict | None = None
    seconds: float = 0.0
    # a flash_attn found in the base environment: where, its version, and what became of it ("status":
    # "in use" after it passed verification, else "hidden", with the reason)
    base_env: dict | None = None

    @property
    def active(self) -> bool:
        return self.backend == "flash_attn"

    def to_json(self) -> dict:
        return asdict(self)


def _sdpa(settings: Settings, reason: str, **kw) -> Verdict:
    return Verdict(mode=settings.flash_attn, backend="sdpa", reason=reason, attention=AttentionChoice.sdpa(reason), **kw)


def _active(settings: Settings, published: install.Published, **kw) -> Verdict:
    verification = published.manifest.get("verification") or {}
    return Verdict(
        mode=settings.flash_attn,
        backend="flash_attn",
        reason=None,
        wheel=published.wheel,
        version=published.version,
        source=published.manifest.get("source"),
        site=str(published.site),
        attention=AttentionChoice.from_timings(verification.get("timings_ms")),
        verification=verification,
        **kw,
    )


def hide_base_env(settings: Settings) -> dict | None:
    """Hide a flash_attn the base environment has (not one of ours) until it passes verification; its report
    entry, or None when there is none. Cheap: looks at files, imports nothing. Never raises."""
    try:
        already = baseenv.hidden()
        found = already or baseenv.find(exclude=[settings.root / "flash-attn"])
        if found is None:
            return None
        baseenv.hide(found)
    except Exception as exc:  # noqa: BLE001  the bootstrap must never take the worker down
        event(log, "flash_attn base environment check failed", phase="flash_attn.base_env",
              error=f"{type(exc).__name__}: {exc}")
        return None
    if already is None:
        event(log, "flash_attn in the base environment hidden until verified", phase="flash_attn.base_env",
              site=str(found.site), version=found.version)
    return {**found.to_json(), "status": "hidden", "reason": "not verified yet"}


def _base_note(base_env: dict | None, status: str, reason: str | None) -> dict | None:
    return {**base_env, "status": status, "reason": reason} if base_env else None


def _try_base_env(settings: Settings, fp: Fingerprint, request: VersionRequest, base_env: dict | None,
                  attempts: list[Attempt]) -> tuple[Verdict | None, dict | None]:
    """Verify the hidden base-environment flash_attn where it is; unhide it and return its verdict if it passes.

    On failure it stays hidden: the attempt says why, and the plan's candidates come next."""
    found = baseenv.hidden()
    if base_env is None or found is None:
        return None, base_env
    why_not = check_environment(fp)
    if why_not is None and found.version and not request.allows(found.version):
        why_not = f"version {found.version} is not in the request {request.text!r} (F5_WORKER_FLASH_ATTN_VERSION)"
    if why_not:
        return None, _base_note(base_env, "hidden", f"not verified: {why_not}")
    began = time.monotonic()
    try:
        with phase(log, "flash_attn.verify", wheel=found.label, source=baseenv.SOURCE) as outcome:
            shadow = baseenv.shadow_dir()
            verification = install.verify(found.site, found.label, settings.verify_timeout_s, in_place=True,
                                          hidden=(str(shadow),) if shadow else ())
            outcome.update(device=verification.get("device"), rel_error=verification.get("rel_error"))
    except (F5WorkerError, OSError) as exc:
        attempts.append(Attempt(found.label, baseenv.SOURCE, "failed", str(exc), round(time.monotonic() - began, 3)))
        event(log, "flash_attn candidate failed", wheel=found.label, source=baseenv.SOURCE, error=str(exc))
        return None, _base_note(base_env, "hidden", f"failed verification, hidden for the life of the process: {exc}")
    attempts.append(Attempt(found.label, baseenv.SOURCE, "active", None, round(time.monotonic() - began, 3)))
    baseenv.unhide()
    verdict = Verdict(
        mode=settings.flash_attn,
        backend="flash_attn",
        reason=None,
        version=verification.get("version") or found.version,
        source=baseenv.SOURCE,
        site=str(found.site),
        attention=AttentionChoice.from_timings(verification.get("timings_ms")),
        verification=verification,
        attempts=attempts,
        base_env=_base_note(base_env, "in use", "passed verification in the base environment"),
    )
    return verdict, verdict.base_env


def plan_for(settings: Settings, fp: Fingerprint, http: httpx.Client) -> Plan:
    """Gather what the sources hold (unless the environment rules flash-attn out) and resolve."""
    layout = install.Layout(settings.root / "flash-attn")
    request = VersionRequest.parse(settings.flash_attn_version)
    if check_environment(fp):
        return resolve(fp, request, upstream_url=None)
    offers, skipped = sources.gather_offers(layout.wheels, settings.flash_attn_mirrors, http, settings.allow_http)
    plan = resolve(
        fp,
        request,
        offers=offers,
        upstream_url=settings.flash_attn_upstream or None,
        known_bad=install.rejected(layout.installs(fp.runtime_key())),
    )
    return Plan(plan.status, plan.reason, plan.request, plan.candidates, tuple(skipped) + plan.trace)


# -- getting the wheel file ----------------------------------------------------------


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_path(url: str) -> Path | None:
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.parse.unquote(parts.path)) if parts.scheme == "file" else None


def _fetch(settings: Settings, candidate: Candidate, wheels_dir: Path, http: httpx.Client) -> Path:
    """A local, whole file of ``candidate``: from the cache or a local mirror, else downloaded once onto the volume."""
    pinned = settings.flash_attn_sha256.get(candidate.filename) or candidate.sha256
    local = _local_path(candidate.url)
    if local is not None:
        if pinned and _sha256_of(local) != pinned:
            raise ChecksumMismatch(candidate.url, pinned, _sha256_of(local))
        return local

    dest = wheels_dir / candidate.filename
    wheels_dir.mkdir(parents=True, exist_ok=True)
    lease = Lease(wheels_dir / f"{candidate.filename}.lease")
    waited_since = time.monotonic()
    while not lease.try_acquire():
        # Another worker is fetching this file: wait for it rather than download it twice.
        if dest.is_file():
            return dest
        if time.monotonic() - waited_since > LEASE_WAIT_MAX_S:
            break
        time.sleep(LEASE_POLL_S)
    try:
        if dest.is_file():
            return dest
        with phase(log, "flash_attn.download", wheel=candidate.filename, url=candidate.url):
            net.download(
                http,
                candidate.url,
                dest,
                max_bytes=MAX_WHEEL_BYTES,
                sha256=pinned,
                retries=settings.download_retries,
                allow_http=settings.allow_http,
                validate=install.wheel_metadata_version,
                on_progress=lease.heartbeat,
                deadline_s=settings.download_deadline_s,
            )
        return dest
    finally:
        lease.release()


# -- one candidate, start to finish -------------------------------------------------


def _try(settings: Settings, fp: Fingerprint, candidate: Candidate, layout: install.Layout, http: httpx.Client) -> install.Published:
    installs_dir = layout.installs(fp.runtime_key())
    wheel_path = _fetch(settings, candidate, layout.wheels, http)
    staging = install.new_staging(installs_dir)
    try:
        with phase(log, "flash_attn.stage", wheel=candidate.filename):
            site = install.stage(wheel_path, staging)
        with phase(log, "flash_attn.verify", wheel=candidate.filename) as outcome:
            verification = install.verify(site, candidate.filename, settings.verify_timeout_s)
            outcome.update(device=verification.get("device"), rel_error=verification.get("rel_error"))
        manifest = {
            "wheel": candidate.filename,
            "version": candidate.version,
            "source": candidate.source,
            "url": candidate.url,
            "sha256": _sha256_of(wheel_path),
            "fingerprint": fp.to_json(),
            "verification": verification,
            "published_at": time.time(),
        }
        write_json_atomic(staging / install.INSTALL_MANIFEST, manifest)
        final, ours = install.publish(staging, installs_dir / candidate.filename.removesuffix(".whl"))
        event(log, "flash_attn published" if ours else "flash_attn adopted another worker's install", path=str(final))
        return install.read_published(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _forget_bad_file(candidate: Candidate, layout: install.Layout) -> None:
    """A corrupt or mismatching file in our own cache must not be offered again."""
    local = _local_path(candidate.url)
    path = local if candidate.source == "cache" else layout.wheels / candidate.filename
    if path is not None and path.parent == layout.wheels:
        path.unlink(missing_ok=True)


def provision(
    settings: Settings,
    *,
    detect: Callable[[bool], Fingerprint] = probe.detect,
    http: httpx.Client | None = None,
) -> Verdict:
    """Activate flash-attn for this runtime, or return the SDPA verdict with its reason.

    Never raises, except ``FlashAttnRequired`` when the operator asked for ``require``.
    """
    start = time.monotonic()
    verdict = _provision(settings, detect, http)
    verdict.seconds = round(time.monotonic() - start, 3)
    event(log, "flash_attn verdict", phase="flash_attn", backend=verdict.backend, reason=verdict.reason,
          wheel=verdict.wheel, warm=verdict.warm, seconds=verdict.seconds)
    if settings.flash_attn == "require" and not verdict.active:
        raise FlashAttnRequired(verdict.reason or "unknown")
    return verdict


def lookup_published(settings: Settings, *, detect: Callable[[bool], Fingerprint] = probe.detect) -> Verdict | None:
    """The warm start alone: activate the install an earlier start published for this runtime, if any.

    No network, no pip, no torch import: cheap enough to run before serving. None when there is
    nothing to activate (then ``provision`` does the cold start, which may run in the background);
    the SDPA verdict when flash-attn is off. Never raises.
    """
    base_env = hide_base_env(settings)
    if settings.flash_attn == "off":
        return _sdpa(settings, "flash-attn disabled by F5_WORKER_FLASH_ATTN=off",
                     base_env=_base_note(base_env, "hidden", "flash-attn is off"))
    start = time.monotonic()
    try:
        verdict = _activate_published(settings, detect(False).runtime_key())
    except Exception as exc:  # the bootstrap must never take the worker down; the cold path will say more
        event(log, "flash_attn warm lookup failed", phase="flash_attn.warm_lookup", error=f"{type(exc).__name__}: {exc}")
        return None
    if verdict is not None:
        verdict.seconds = round(time.monotonic() - start, 3)
        verdict.base_env = _base_note(base_env, "hidden", _PUBLISHED_WINS)
        event(log, "flash_attn verdict", phase="flash_attn", backend=verdict.backend, reason=None,
              wheel=verdict.wheel, warm=True, seconds=verdict.seconds)
    return verdict


def _activate_published(settings: Settings, key: str) -> Verdict | None:
    request = VersionRequest.parse(settings.flash_attn_version)
    layout = install.Layout(settings.root / "flash-attn")
    with phase(log, "flash_attn.warm_lookup") as outcome:
        published = [p for p in install.published_installs(layout.installs(key)) if request.allows(p.version)]
        outcome.update(runtime_key=key, found=len(published))
    if not published:
        return None
    install.activate(published[0].site)
    return _active(settings, published[0], warm=True, runtime_key=key)


def _provision(settings: Settings, detect: Callable[[bool], Fingerprint], http: httpx.Client | None) -> Verdict:
    base_env = hide_base_env(settings)
    if settings.flash_attn == "off":
        return _sdpa(settings, "flash-attn disabled by F5_WORKER_FLASH_ATTN=off",
                     base_env=_base_note(base_env, "hidden", "flash-attn is off"))
    try:
        request = VersionRequest.parse(settings.flash_attn_version)
        layout = install.Layout(settings.root / "flash-attn")

        key = detect(False).runtime_key()
        warm = _activate_published(settings, key)
        if warm is not None:
            warm.base_env = _base_note(base_env, "hidden", _PUBLISHED_WINS)
            return warm

        fp = detect(True)
        attempts: list[Attempt] = []
        verdict, base_env = _try_base_env(settings, fp, request, base_env, attempts)
        if verdict is not None:
            verdict.runtime_key = key
            return verdict
        install.sweep_stale(layout.installs(key))
        sweep_incomplete(layout.wheels, ".*.incomplete")
        own_client = http is None
        http = http or net.client(settings.download_timeout_s)
        try:
            with phase(log, "flash_attn.resolve") as outcome:
                plan = plan_for(settings, fp, http)
                outcome.update(status=plan.status, candidates=len(plan.candidates))
            if plan.status != "ok":
                reason = plan.reason or "no candidate"
                if attempts:
                    reason = f"{_failures(attempts)}; no other candidate: {reason}"
                return _sdpa(settings, reason, attempts=attempts, plan=plan.to_json(), runtime_key=key, base_env=base_env)
            for candidate in plan.candidates:
                began = time.monotonic()
                try:
                    published_install = _try(settings, fp, candidate, layout, http)
                except (F5WorkerError, OSError) as exc:
                    attempts.append(Attempt(candidate.filename, candidate.source, "failed", str(exc), round(time.monotonic() - began, 3)))
                    event(log, "flash_attn candidate failed", wheel=candidate.filename, source=candidate.source, error=str(exc))
                    if isinstance(exc, (CorruptWheel, NotAFlashAttnWheel, ChecksumMismatch)):
                        _forget_bad_file(candidate, layout)
                    # A timeout says nothing about the wheel (a slow or busy machine): it is tried again next start.
                    if isinstance(exc, VerificationFailed) and not isinstance(exc, VerificationTimeout):
                        install.mark_rejected(layout.installs(key), candidate.filename, exc.reason)
                    continue
                attempts.append(Attempt(candidate.filename, candidate.source, "active", None, round(time.monotonic() - began, 3)))
                install.activate(published_install.site)
                return _active(settings, published_install, attempts=attempts, plan=plan.to_json(), runtime_key=key,
                               base_env=base_env)
            return _sdpa(settings, _failures(attempts), attempts=attempts, plan=plan.to_json(), runtime_key=key,
                         base_env=base_env)
        finally:
            if own_client:
                http.close()
    except Exception as exc:  # the bootstrap must never take the worker down
        log.warning("flash_attn provisioning error", exc_info=True, extra={"phase": "flash_attn"})
        return _sdpa(settings, f"flash-attn provisioning failed: {type(exc).__name__}: {exc}", base_env=base_env)


def _failures(attempts: list[Attempt]) -> str:
    return "every candidate failed: " + "; ".join(f"{a.wheel} ({a.source}): {a.error}" for a in attempts)
