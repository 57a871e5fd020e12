"""The cold-start sequence: volume, model files, flash-attn; its report is printed and kept on the volume.

Runs before anything imports F5-TTS (flash-attn must be on ``sys.path`` first, and a
broken one must never be). Each step is timed and logged as a phase; no step's
failure stops the worker, except the operator's explicit
``F5_WORKER_FLASH_ATTN=require``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import __version__
from .flash_attn.provision import Verdict, provision
from .models import ModelsConfig, ModelsReport, ensure_models, plan
from .fsutil import write_json_atomic
from .log import get_logger, phase
from .runtime import probe
from .settings import LOCAL_VOLUME, RUNPOD_HF_CACHE, TINY_RANDOM, Settings
from .volume import choose_volume

__all__ = ["Report", "run"]

log = get_logger("bootstrap")


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

    def to_json(self) -> dict:
        data = {k: v for k, v in vars(self).items() if k not in ("flash_attn", "model_files")}
        data["flash_attn"] = self.flash_attn.to_json() if self.flash_attn else None
        return data


def run(settings: Settings) -> tuple[Settings, Report]:
    """Run the bootstrap; returns the settings in force (the volume may have changed) and the report."""
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
    report.flash_attn = provision(settings)
    report.seconds["flash_attn"] = round(time.monotonic() - mark, 3)
    # Cached: provision already probed. A warm start never imported torch, and the report won't either.
    report.fingerprint = probe.detect(not report.flash_attn.warm).to_json()
    report.seconds["total"] = round(time.monotonic() - start, 3)

    try:
        write_json_atomic(settings.root / "reports" / "last-bootstrap.json", report.to_json())
    except OSError as exc:
        report.warnings.append(f"could not keep the report on the volume: {exc}")
    return settings, report
