"""The worker, assembled: bootstrap, engine with the verified attention backend, warm-up, service.

``start(settings)`` is what both entry points run before serving: the RunPod handler
(``f5-worker runpod``) and the local HTTP API (``f5-worker serve``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import bootstrap
from .bootstrap import Report
from .errors import ModelUnavailable
from .log import get_logger, phase
from .settings import TINY_RANDOM, Settings

__all__ = ["Worker", "start"]

log = get_logger("worker")


@dataclass
class Worker:
    settings: Settings
    report: Report
    service: object  # serving.service.Service (imported after the bootstrap: it imports F5-TTS)

    @property
    def concurrency(self) -> int:
        """Jobs to take at once: as configured, else as many as the engine batches."""
        return self.settings.concurrency or self.service.engine.batcher.max_batch

    def health(self) -> dict:
        verdict = self.report.flash_attn
        return {
            "status": "ready",
            "engine": self.service.engine.info(),
            "concurrency": self.concurrency,
            "flash_attn": {"backend": verdict.backend, "reason": verdict.reason, "version": verdict.version,
                           "backends": verdict.backends} if verdict else None,
            "warnings": self.report.warnings,
            "bootstrap_seconds": self.report.seconds,
        }


def _uploader():
    """RunPod's bucket upload, when the operator configured a bucket the way the SDK expects."""
    if not os.environ.get("BUCKET_ENDPOINT_URL"):
        return None
    from runpod.serverless.utils import rp_upload

    return lambda name, data: rp_upload.upload_in_memory_object(name, data, prefix="f5-worker")


def start(settings: Settings, *, warm_up: bool = True) -> Worker:
    settings, report = bootstrap.run(settings)

    # Only now may F5-TTS be imported: flash_attn, if any, is verified and on sys.path.
    from .engine.engine import Engine, EngineConfig
    from .engine.models import ModelFiles
    from .serving.request import Limits
    from .serving.service import Service, ServiceConfig

    if settings.model == TINY_RANDOM:
        files = ModelFiles()
    else:
        report.model_files.raise_if_failed()
        files = ModelFiles(**{role: Path(path) for role, path in report.model_files.paths.items()})
        if None in (files.checkpoint, files.vocab, files.vocoder_config, files.vocoder_weights):
            # Never fall through to random weights for a real model.
            raise ModelUnavailable([f"model step returned no path for one of {sorted(report.model_files.paths)}"])
    backends = report.flash_attn.backends if report.flash_attn else {}

    def attn_backend(mode: str) -> str:  # the verdict names "sdpa" what F5-TTS calls "torch"
        return "flash_attn" if backends.get(mode, {}).get("backend") == "flash_attn" else "torch"

    with phase(log, "engine.load"):
        engine = Engine(EngineConfig(model=settings.model, files=files, attn_backend=attn_backend("single"),
                                     batch_attn_backend=attn_backend("batch"), max_batch=settings.max_batch,
                                     batch_window_s=settings.batch_window_ms / 1000))
    if warm_up:
        report.seconds["warm_up"] = engine.warm_up()
        with phase(log, "engine.tune"):
            engine.tune(settings.root / "cache" / "tuning")
        engine.prewarm()  # in the background, whenever no request is waiting
    limits = Limits(max_text_chars=settings.max_text_chars, max_ref_bytes=settings.max_ref_bytes,
                    max_ref_seconds=settings.max_ref_seconds, max_output_seconds=settings.max_output_seconds,
                    download_timeout_s=settings.ref_download_timeout_s)
    service = Service(engine, ServiceConfig(voices_dir=settings.voices, limits=limits,
                                            ref_allow_http=settings.ref_allow_http, upload=_uploader()))
    return Worker(settings, report, service)
