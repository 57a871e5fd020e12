"""The worker, assembled: bootstrap, engine, service; ready first, optimised in the background.

``Worker.load()`` is what both entry points run before serving (``f5-worker runpod``
blocks on it; ``f5-worker serve`` listens first and runs it on a thread). It serves as
soon as the model can answer, with the verified-safe defaults: SDPA (or the flash-attn
install an earlier start published and verified) and a default batch size. What only
makes the worker faster finishes afterwards and is switched in between batches:

- ``flash_attn``: finding, fetching and verifying a wheel on a new volume (a thread);
- ``kernels``: compiling the engine's Triton kernels and checking them on the GPU (a thread);
- ``tuning`` and ``graphs``: measuring the batch size and capturing step graphs (the
  engine's GPU thread, whenever no request waits).

``health()`` says what is active and what is still pending.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, bootstrap, fa4
from .attention_choice import FA4, SDPA, AttentionChoice
from .bootstrap import Report
from .errors import ConfigError, ModelUnavailable
from .log import event, get_logger, phase
from .runtime import probe
from .runtime.fingerprint import Fingerprint
from .settings import ASR_OFF, TINY_RANDOM, Settings, env_name

if TYPE_CHECKING:
    from .fa4_fetch import Fa4Install

__all__ = ["Worker", "start"]

log = get_logger("worker")


class Worker:
    def __init__(self, settings: Settings, *, detect: Callable[[bool], Fingerprint] = probe.detect,
                 devices: Sequence[str | None] | None = None):
        self.settings = settings
        self.version = __version__
        self.started = time.monotonic()
        self.state = "initialising"  # -> "ready" | "failed"
        self.error: str | None = None
        self.report: Report | None = None
        self.service = None  # serving.service.Service, once loaded
        # The deferred flash-attn step and FlashAttention-4's check, if any.
        self.background: threading.Thread | None = None
        self._fa4_pending = False
        self._detect = detect
        self._devices = devices  # the engines' devices; None: one per GPU F5_WORKER_GPUS selects (engine.pool)
        self._loaded = threading.Event()  # the engine exists (ready or not yet warmed up)
        self._settled = threading.Event()  # ready or failed: the worker's start is over
        self.torch_imported = threading.Event()  # set once torch is imported (or failed to import)

    @property
    def engine(self):
        return self.service.engine if self.service else None

    @property
    def concurrency(self) -> int:
        """Jobs to take at once: as configured, else as many as the engine batches (it may grow once tuned)."""
        return self.settings.concurrency or (self.engine.batcher.max_batch if self.engine else 1)

    def health(self) -> dict:
        report, engine = self.report, self.engine
        verdict = report.flash_attn if report else None
        pending = (list(report.pending if report else []) + (["fa4"] if self._fa4_pending else [])
                   + list(engine.pending if engine else []))
        return {
            "status": self.state,
            **({"error": self.error} if self.error else {}),
            "engine": engine.info() if engine else None,
            "attention": engine.attention.to_json() if engine else None,  # what runs now
            "pending": pending,  # what is still being found, verified, measured or captured
            "concurrency": self.concurrency,
            "flash_attn": {"backend": verdict.backend, "reason": verdict.reason, "version": verdict.version,
                           "warm": verdict.warm} if verdict else None,
            "asr": (self.service.transcriber.status() if self.service and self.service.transcriber
                    else {"model": self.settings.asr_model, "state": "off" if self.settings.asr_model == ASR_OFF
                          else "not loaded"}),
            "warnings": report.warnings if report else [],
            "bootstrap_seconds": report.seconds if report else {},
            "uptime_s": round(time.monotonic() - self.started, 3),
        }

    # -- loading -------------------------------------------------------------------

    def load(self, *, warm_up: bool = True) -> Worker:
        """Bootstrap, build the engine, warm it up: then ready. Raises (and says why in ``health``) on failure."""
        try:
            self._load(warm_up)
        except BaseException as exc:
            self.state, self.error = "failed", str(exc) or type(exc).__name__
            self._loaded.set()
            self._settled.set()
            self.torch_imported.set()
            raise
        return self

    def _load(self, warm_up: bool) -> None:
        # torch takes seconds to import, nearly all of it holding the GIL: on its own thread it overlaps the
        # bootstrap's file and network work (a model migrated or downloaded on a new volume). Importing it
        # imports no flash_attn, so it may come before the bootstrap.
        torch_import = threading.Thread(target=self._import_torch, name="f5-worker-import-torch", daemon=True)
        torch_import.start()
        settings, report = bootstrap.run(self.settings, defer_flash_attn=True, detect=self._detect)
        self.settings, self.report = settings, report
        gpu = bool((report.fingerprint or {}).get("compute_capability"))
        if "flash_attn" in report.pending or (settings.fa4 == "auto" and (gpu or fa4.installed())):
            # Started now, so fetching and verifying overlap the model's load; it switches the engine once both are done.
            # /health lists "fa4" until FlashAttention-4 is decided (fetched, checked, prepared) or not wanted.
            self._fa4_pending = settings.fa4 == "auto"
            self.background = threading.Thread(target=self._finish_attention, args=("flash_attn" in report.pending,),
                                               name="f5-worker-attention", daemon=True)
            self.background.start()

        # Only now may the engine import torch's attention paths: a published flash_attn is on sys.path.
        torch_import.join()
        import torch

        from .engine.engine import EngineConfig
        from .engine.models import ModelFiles
        from .engine.pool import devices_for, load_engines
        from .serving.service import Service, ServiceConfig

        if settings.model == TINY_RANDOM:
            files = ModelFiles()
        else:
            report.model_files.raise_if_failed()
            files = ModelFiles(**{role: Path(path) for role, path in report.model_files.paths.items()})
            if None in (files.checkpoint, files.vocab, files.vocoder_config, files.vocoder_weights):
                # Never fall through to random weights for a real model.
                raise ModelUnavailable([f"model step returned no path for one of {sorted(report.model_files.paths)}"])
        devices = self._devices or devices_for(settings.gpus, torch.cuda.device_count())
        with phase(log, "engine.load"):  # one Engine; several (an EnginePool, loaded in parallel) on several GPUs
            engine = load_engines(EngineConfig(model=settings.model, files=files,
                                               attention=report.flash_attn.attention, max_batch=settings.max_batch,
                                               batch_window_s=settings.batch_window_ms / 1000), devices)
        transcriber = None
        if settings.asr_model != ASR_OFF:  # builds nothing heavy: transformers is imported on first need
            from .asr import Transcriber

            transcriber = Transcriber(settings, device=engine.device)
        self.service = Service(engine, ServiceConfig.from_settings(settings, transcriber=transcriber))
        self._loaded.set()
        if warm_up:
            report.seconds["warm_up"] = engine.warm_up()
            # Triton keeps what it compiles (keyed by kernel source, GPU, Triton version) on the volume:
            # the engine's kernels compile once per kind of machine, and later starts load them.
            os.environ.setdefault("TRITON_CACHE_DIR", str(self.settings.root / "cache" / "triton"))
            engine.start_background(self.tuning_dir)
        self.state = "ready"
        self._settled.set()
        if transcriber is not None and settings.asr_preload:
            transcriber.preload()  # in the background: readiness never waits for it
        event(log, "worker ready", phase="worker.ready", since_start_s=round(time.monotonic() - self.started, 3),
              attention=str(engine.attention), pending=self.health()["pending"])

    def _import_torch(self) -> None:
        try:
            with phase(log, "import.torch"):
                import torch  # noqa: F401
        finally:
            self.torch_imported.set()

    @property
    def tuning_dir(self) -> Path:
        return self.settings.root / "cache" / "tuning"

    def _finish_attention(self, flash_attn_pending: bool) -> None:
        """The background half of the attention choice: flash-attn's verification (when the bootstrap deferred
        it), then FlashAttention-4 (fetched when not installed, checked, prepared); the engine switches once,
        between batches."""
        try:
            verdict = (bootstrap.finish_flash_attn(self.settings, self.report, detect=self._detect)
                       if flash_attn_pending else None)
            self._loaded.wait()
            engine = self.engine
            if engine is None:
                return
            now = engine.attention
            choice = self._with_fa4(verdict.attention if verdict else now, engine)
            if (choice.single, choice.batch) != (now.single, now.batch):
                engine.use_attention(choice, self.tuning_dir)
            else:  # the same kernels: nothing to switch or measure again; only the reason is new
                engine.attention = choice
        except Exception as exc:  # noqa: BLE001  the worker keeps serving on SDPA
            event(log, "attention background step failed", phase="attention.background", level=logging.WARNING,
                  error=f"{type(exc).__name__}: {exc}")
        finally:
            self._fa4_pending = False

    def _with_fa4(self, choice: AttentionChoice, engine) -> AttentionChoice:
        """``choice``, with unmasked batches on FlashAttention-4 where it is installed or could be fetched onto the
        volume (``fa4_fetch``), passed its check in a child process and measured faster there (``fa4``); the
        reason is logged either way. Only an SDPA choice can change (``fa4.choose``): nothing is fetched else."""
        if self.settings.fa4 == "off" or choice.single != SDPA or not engine.device.startswith("cuda"):
            return choice
        fingerprint = self._detect(True)
        site, version = None, fa4.installed()
        if version is None:
            fetched = self._fetch_fa4(fingerprint)
            if isinstance(fetched, str):
                return fa4.choose(fa4.Fa4Check(False, f"not fetched: {fetched}"), choice)
            site, version = fetched.site, fa4.installed(fetched.site)
        arch = getattr(engine, "engines", [engine])[0].model.transformer.arch
        key = fa4.check_key(version, fingerprint)
        found = fa4.saved_check(self.settings.root, key)
        if found is not None:  # passed on this runtime and GPU by an earlier start
            event(log, "fa4 check kept on the volume", phase="fa4.check", key=key, timings_ms=found.timings_ms)
        else:
            with phase(log, "fa4.check", version=version) as outcome:
                found = fa4.check(arch.heads, arch.dim_head, fa4.CHECK_FRAMES, site=site)
                outcome.update(ok=found.ok, why=found.why, timings_ms=found.timings_ms, rel_diff=found.rel_diff)
            fa4.save_check(self.settings.root, key, found)
        chosen = fa4.choose(found, choice)
        if chosen.single == FA4:
            # Importing the CuTe DSL and compiling hold this process's GIL for ~10 s: never while the worker warms
            # up (on the H200 a warm start beside them was ready after 10.5 s instead of 5.2). The fetch and the
            # check above may overlap the start: they are pip and a child process.
            self._settled.wait()
            if self.state != "ready":
                return choice
            try:
                if site is not None:
                    fa4.add_site(site)
                fa4.make_importable()
            except (ImportError, OSError) as exc:  # (the flash-attn verdict must still apply)
                return fa4.choose(fa4.Fa4Check(False, f"not importable here: {exc}"), choice)
            try:
                with phase(log, "fa4.prepare"):  # import and compile here, before the switch, not in a request
                    for one in getattr(engine, "engines", [engine]):
                        fa4.prepare(arch.heads, arch.dim_head, one.device, one.dtype)
            except Exception as exc:  # noqa: BLE001  whatever it raises, unmasked batches stay where they were
                return fa4.choose(fa4.Fa4Check(False, f"failed in the worker: {type(exc).__name__}: {exc}"), choice)
        return chosen

    def _fetch_fa4(self, fingerprint: Fingerprint) -> Fa4Install | str:
        """The pinned FlashAttention-4 set on the volume (fetched now unless an earlier start did), or why not."""
        from . import fa4_fetch  # background work only: not imported on the way to ready

        if not self.settings.fa4_index:
            return f"{env_name('fa4_index')} is empty"
        planned = fa4_fetch.plan(fingerprint, fa4_fetch.Pins.load())
        if isinstance(planned, str):
            return planned
        with phase(log, "fa4.fetch", key=planned.key, index=self.settings.fa4_index) as outcome:
            try:
                fetched = fa4_fetch.fetch(planned, self.settings.root, self.settings.fa4_index,
                                          allow_http=self.settings.allow_http,
                                          on_line=lambda line: event(log, line, phase="fa4.fetch"))
            except (fa4_fetch.FetchFailed, ConfigError, OSError) as exc:
                outcome.update(error=f"{type(exc).__name__}: {exc}")
                return f"{type(exc).__name__}: {exc}"
            outcome.update(warm=fetched.warm, site=str(fetched.site), fetch_seconds=fetched.seconds)
        return fetched


def start(settings: Settings, *, warm_up: bool = True, detect: Callable[[bool], Fingerprint] = probe.detect) -> Worker:
    """A loaded, ready worker (its background work goes on)."""
    return Worker(settings, detect=detect).load(warm_up=warm_up)
