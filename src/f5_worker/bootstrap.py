"""The start-up sequence: volume, model files, flash-attn; its report is printed and kept on the volume.

Runs before the engine imports torch's attention paths (a flash_attn must be on ``sys.path``
before anything imports it, and a broken one never). Each step is timed and logged as a
phase; no step's failure stops the worker, except the operator's explicit
``F5_WORKER_FLASH_ATTN=require``.

Flash-attn only makes the worker faster, so with ``defer_flash_attn`` (how the worker starts)
only its warm path runs here: activating an install an earlier start published. Finding,
fetching and verifying a wheel is then left to ``finish_flash_attn`` in the background, and
the report says it is pending; the worker serves on SDPA until its verdict is in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import __version__
from .attention_choice import AttentionChoice
from .flash_attn.provision import Verdict, hide_base_env, lookup_published, provision
from .models import ModelsConfig, ModelsReport, ensure_models, plan
from .fsutil import write_json_atomic
from .log import event, get_logger, phase
from .runtime import probe
from .runtime.fingerprint import Fingerprint
from .settings import LOCAL_VOLUME, RUNPOD_HF_CACHE, TINY_RANDOM, Settings
from .volume import choose_volume

__all__ = ["Report", "run", "finish_flash_attn", "PENDING_REASON"]

log = get_logger("bootstrap")
PENDING_REASON = "flash-attn is being found and verified in the background; SDPA until its verdict is in"


@dataclass
class Report:
    worker_version: str
    volume: str
    warnings: list[str] = field(default_factory=list)
    fingerprint: dict | None = None
    models: dict | None = None
    flash_attn: Verdict | None = None
    model_files: ModelsReport | None = None  # the object behind ``models``: paths to load, raise_if_failed()
    seconds: dict = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # steps still running in the background ("flash_attn")

    def to_json(self) -> dict:
        data = {k: v for k, v in vars(self).items() if k not in ("flash_attn", "model_files")}
        data["flash_attn"] = self.flash_attn.to_json() if self.flash_attn else None
        return data


def run(settings: Settings, *, defer_flash_attn: bool = False,
        detect: Callable[[bool], Fingerprint] = probe.detect) -> tuple[Settings, Report]:
    """Run the bootstrap; returns the settings in force (the volume may have changed) and the report.

    ``defer_flash_attn``: leave a cold flash-attn start to ``finish_flash_attn`` (not with ``require``,
    which must decide before serving)."""
    start = time.monotonic()
    with phase(log, "bootstrap.volume") as outcome:
        choice = choose_volume(settings.volume)
        settings = settings.replace(volume=choice.path)
        outcome.update(volume=str(choice.path))
    report = Report(worker_version=__version__, volume=str(choice.path))
    if choice.warning:
        report.warnings.append(choice.warning)
        log.warning(choice.warning, extra={"phase": "bootstrap.volume"})
    report.seconds["volume"] = round(time.monotonic() - start, 3)
    # A flash_attn already in the base environment is hidden at once (this imports nothing) from the worker
    # and its children, until it passes the same verification as a downloaded wheel (provision, in the background).
    base_env = hide_base_env(settings)

    # Models first: this sets HF_HUB_CACHE (and HF_HUB_OFFLINE when all is cached) before
    # anything can import huggingface_hub; a missing file is reported, not raised, here.
    mark = time.monotonic()
    with phase(log, "bootstrap.models") as outcome:
        models = ensure_models(ModelsConfig(
            cache_dir=settings.hub_cache,
            work_dir=settings.root / "models",
            # tiny-random builds its weights: nothing to fetch
            files=() if settings.model == TINY_RANDOM else plan(settings.model, settings.ckpt, settings.vocab),
            read_caches=(RUNPOD_HF_CACHE,),
            legacy_dirs=tuple(p.expanduser() for p in settings.legacy_model_dirs),
            fallback_cache_dir=LOCAL_VOLUME.expanduser() / "huggingface-cache" / "hub",
            offline=settings.offline,
            etag_timeout_s=min(10.0, settings.download_timeout_s),
            download_timeout_s=settings.download_timeout_s,
        ))
        outcome.update(ok=models.ok, offline=models.offline, cache_dir=models.cache_dir)
    report.model_files, report.models = models, models.to_json()
    report.warnings += list(models.warnings)
    if not models.ok:
        report.warnings.append(report.models["error"])
    report.seconds["models"] = round(time.monotonic() - mark, 3)

    mark = time.monotonic()
    verdict = lookup_published(settings, detect=detect) if defer_flash_attn and settings.flash_attn != "require" else None
    if verdict is None and defer_flash_attn and settings.flash_attn == "auto":
        report.flash_attn = Verdict(mode=settings.flash_attn, backend="sdpa", reason=PENDING_REASON,
                                    attention=AttentionChoice.sdpa(PENDING_REASON), base_env=base_env)
        report.pending.append("flash_attn")
        event(log, "flash_attn deferred", phase="flash_attn", reason=PENDING_REASON)
    else:
        report.flash_attn = verdict or provision(settings, detect=detect)
    report.seconds["flash_attn"] = round(time.monotonic() - mark, 3)
    # Without torch on a warm or deferred start: the background step probes fully when it runs.
    report.fingerprint = detect(not (report.flash_attn.warm or report.pending)).to_json()
    report.seconds["total"] = round(time.monotonic() - start, 3)
    save(settings, report)
    return settings, report


def finish_flash_attn(settings: Settings, report: Report, *,
                      detect: Callable[[bool], Fingerprint] = probe.detect) -> Verdict:
    """The deferred flash-attn step (on a background thread): find, fetch, verify, publish, activate.
    Updates the report (and its copy on the volume); never raises."""
    with phase(log, "flash_attn.background") as outcome:
        verdict = provision(settings, detect=detect)
        outcome.update(backend=verdict.backend, reason=verdict.reason)
    report.flash_attn = verdict
    report.seconds["flash_attn_background"] = verdict.seconds
    report.fingerprint = detect(True).to_json()
    if "flash_attn" in report.pending:
        report.pending.remove("flash_attn")
    save(settings, report)
    return verdict


def save(settings: Settings, report: Report) -> None:
    try:
        write_json_atomic(settings.root / "reports" / "last-bootstrap.json", report.to_json())
    except OSError as exc:
        report.warnings.append(f"could not keep the report on the volume: {exc}")
