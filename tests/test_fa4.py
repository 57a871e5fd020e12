"""FlashAttention-4 where the environment has it (``f5_worker.fa4``): found by its metadata, importable behind
flash-attn 2's package, checked in a child process, chosen by its timings. The kernels themselves need a Hopper
GPU: bench/gpu.sh probe-fa4 and probe-fa4-engine measured them; tests/engine/test_attention.py holds the
engine's call to them equal to F5-TTS's attention."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from f5_worker import fa4
from f5_worker.attention_choice import AttentionChoice
from support.fa4 import gpu_engine, started
from support.runtime import gpu_fingerprint

RECORD = "flash_attn/cute/__init__.py,,\nflash_attn_4-4.0.0b36.dist-info/METADATA,,\n"


def write_fa4(site):
    """A stand-in flash-attn-4 install: its metadata and flash_attn/cute/ with no flash_attn/__init__.py."""
    (site / "flash_attn" / "cute").mkdir(parents=True)
    (site / "flash_attn" / "cute" / "__init__.py").write_text("def flash_attn_func(q, k, v, softmax_scale=None):\n"
                                                              "    return 'fa4', None\n")
    info = site / "flash_attn_4-4.0.0b36.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flash-attn-4\nVersion: 4.0.0b36\n")
    (info / "RECORD").write_text(RECORD)


def fa2_before_fa4(tmp_path, monkeypatch, fa2_cute: str):
    """flash-attn 2's package (with a ``cute/`` of its own, as 2.8's wheels have) first on the path, FA4 after."""
    fa2, fa4_site = tmp_path / "flash-attn-2", tmp_path / "flash-attn-4"
    (fa2 / "flash_attn" / "cute").mkdir(parents=True)
    (fa2 / "flash_attn" / "__init__.py").write_text("VERSION = '2.8.3'\n")
    (fa2 / "flash_attn" / "cute" / "__init__.py").write_text(fa2_cute)
    write_fa4(fa4_site)
    monkeypatch.syspath_prepend(str(fa4_site))
    monkeypatch.syspath_prepend(str(fa2))
    importlib.invalidate_caches()
    return fa2


@pytest.fixture
def clean_flash_attn(monkeypatch):
    for name in [m for m in sys.modules if m == "flash_attn" or m.startswith("flash_attn.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [m for m in sys.modules if m == "flash_attn" or m.startswith("flash_attn.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_installed_reads_the_metadata_only(tmp_path, monkeypatch, clean_flash_attn):
    assert fa4.installed() is None
    write_fa4(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert fa4.installed() == "4.0.0b36"
    assert "flash_attn" not in sys.modules and "flash_attn.cute" not in sys.modules


def test_fa4_is_made_importable_behind_flash_attn_2s_package(tmp_path, monkeypatch, clean_flash_attn):
    """flash-attn 2's regular package comes first on the path and hides FA4's flash_attn/cute/ behind its own
    (flash-attn 2.8's wheels bring an early copy that fails against FA4's CuTe DSL, as on the H200); FA4's
    directory goes first on that package's path, and flash-attn 2 stays what ``import flash_attn`` is."""
    fa2 = fa2_before_fa4(tmp_path, monkeypatch, "raise AttributeError('ThrMma')  # FA2's old copy\n")
    assert importlib.util.find_spec("flash_attn.cute").origin.startswith(str(fa2))
    fa4.make_importable()
    from flash_attn.cute import flash_attn_func

    import flash_attn

    assert flash_attn.VERSION == "2.8.3" and flash_attn_func(None, None, None) == ("fa4", None)


def test_another_flash_attn_cute_already_imported_is_an_import_error(tmp_path, monkeypatch, clean_flash_attn):
    """Once another flash_attn.cute is loaded, FA4's cannot replace it in this process: the check says so."""
    fa2_before_fa4(tmp_path, monkeypatch, "OLD = True\n")
    importlib.import_module("flash_attn.cute")
    with pytest.raises(ImportError, match="not flash-attn-4's"):
        fa4.make_importable()


def test_alone_fa4_needs_nothing_more(tmp_path, monkeypatch, clean_flash_attn):
    write_fa4(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    fa4.make_importable()
    from flash_attn.cute import flash_attn_func

    assert flash_attn_func(None, None, None)[0] == "fa4"


SDPA_CHOICE = AttentionChoice("sdpa", "flash_attn", "dense attention: measured", "mixed-length batch: measured")


@pytest.mark.parametrize("timings, chosen", [
    ({"fa4_1": 0.040, "sdpa_1": 0.048, "fa4_8": 0.663, "sdpa_8": 0.769}, "fa4"),  # the H200's figures
    ({"fa4_1": 0.040, "sdpa_1": 0.048, "fa4_8": 0.760, "sdpa_8": 0.769}, "sdpa"),  # not 3% faster in batches
    ({"fa4_1": 0.060, "sdpa_1": 0.048, "fa4_8": 0.663, "sdpa_8": 0.769}, "sdpa"),  # slower alone
])
def test_fa4_runs_unmasked_batches_only_when_measured_faster(timings, chosen):
    choice = fa4.choose(fa4.Fa4Check(True, "4.0.0b36 on NVIDIA H200", timings, 2.7e-4), SDPA_CHOICE)
    assert (choice.single, choice.batch, choice.batch_why) == (chosen, "flash_attn", SDPA_CHOICE.batch_why)
    assert "FlashAttention-4" in choice.single_why and f"{timings['fa4_8']:.3f} ms" in choice.single_why


def test_a_failed_check_or_another_kernel_unmasked_keeps_the_choice():
    failed = fa4.Fa4Check(False, "ImportError: libcuda.so.1 not found")
    kept = fa4.choose(failed, SDPA_CHOICE)
    assert (kept.single, kept.batch) == ("sdpa", "flash_attn")
    assert kept.single_why == ("dense attention: measured; "
                               "FlashAttention-4 not used: ImportError: libcuda.so.1 not found")
    flash = AttentionChoice("flash_attn", "flash_attn", "faster than SDPA", "faster")
    fast = fa4.Fa4Check(True, "", {"fa4_1": 0.01, "sdpa_1": 1.0, "fa4_8": 0.1, "sdpa_8": 1.0})
    assert fa4.choose(fast, flash) is flash  # FA4 was timed against SDPA, not against flash-attn 2


def test_the_check_runs_in_a_child_and_says_why_not_here():
    """The real child process: on this machine it finds no GPU and says so (a broken install would say what
    broke, a crash or a hang would cost the child only)."""
    found = fa4.check(16, 64, 1424)
    assert found == fa4.Fa4Check(False, "no GPU")
    assert fa4.check(16, 64, 1424, site=Path("/nonexistent/site")) == found  # a fetched site goes on its path first


def test_a_check_that_does_not_finish_is_cut(monkeypatch):
    found = fa4.check(16, 64, 1424, timeout_s=0.01)
    assert not found.ok and "longer than 0.01 s" in found.why


def test_the_worker_switches_unmasked_batches_when_the_check_says_so(monkeypatch, make_settings):
    from f5_worker.worker import Worker

    made_importable, prepared = [], []
    timings = {"fa4_1": 0.040, "sdpa_1": 0.048, "fa4_8": 0.663, "sdpa_8": 0.769}
    monkeypatch.setattr(fa4, "installed", lambda: "4.0.0b36")
    monkeypatch.setattr(fa4, "check", lambda heads, dim, frames, site=None: fa4.Fa4Check(True, "ok", timings, 2.7e-4)
                        if (heads, dim, frames, site) == (16, 64, 1424, None) else fa4.Fa4Check(False, "wrong shape"))
    monkeypatch.setattr(fa4, "make_importable", lambda: made_importable.append(True))
    monkeypatch.setattr(fa4, "prepare", lambda *shape: prepared.append(shape))
    engine = gpu_engine()
    worker = started(Worker(make_settings()))  # flash-attn-4 "installed": nothing to fetch
    assert worker._with_fa4(SDPA_CHOICE, engine).single == "fa4" and made_importable == [True]
    assert prepared == [(16, 64, "cuda:0", "float16")]  # compiled in the worker before the switch
    pool = SimpleNamespace(device="cuda:0", engines=[engine, gpu_engine("cuda:1")])
    prepared.clear()
    assert worker._with_fa4(SDPA_CHOICE, pool).single == "fa4"
    assert prepared == [(16, 64, "cuda:0", "float16"), (16, 64, "cuda:1", "float16")]

    def fails_to_compile(*shape):
        raise RuntimeError("DSLRuntimeError: no kernel for sm_120")

    monkeypatch.setattr(fa4, "prepare", fails_to_compile)
    kept = worker._with_fa4(SDPA_CHOICE, engine)
    assert kept.single == "sdpa" and kept.single_why.endswith(
        "FlashAttention-4 not used: failed in the worker: RuntimeError: DSLRuntimeError: no kernel for sm_120")

    def not_importable():
        raise ImportError("flash-attn-4 is installed without flash_attn/cute/__init__.py")

    monkeypatch.setattr(fa4, "make_importable", not_importable)
    kept = worker._with_fa4(SDPA_CHOICE, engine)
    assert kept.single == "sdpa" and "not importable here: flash-attn-4 is installed without" in kept.single_why
    assert worker._with_fa4(SDPA_CHOICE, SimpleNamespace(device="cpu")) is SDPA_CHOICE  # no GPU: no check
    assert Worker(make_settings(fa4="off"))._with_fa4(SDPA_CHOICE, engine) is SDPA_CHOICE


def test_fa4_is_imported_and_compiled_in_the_worker_only_once_its_start_is_over(monkeypatch, make_settings):
    """The check may overlap the start (it is a child process), but importing the CuTe DSL and compiling hold the
    worker's GIL for ~10 s: on the H200 a warm start beside them was ready after 10.5 s instead of 5.2. A start
    that failed prepares nothing."""
    import threading
    import time

    from f5_worker.worker import Worker

    order = []
    timings = {"fa4_1": 0.040, "sdpa_1": 0.048, "fa4_8": 0.663, "sdpa_8": 0.769}
    monkeypatch.setattr(fa4, "installed", lambda site=None: "4.0.0b36")
    monkeypatch.setattr(fa4, "check", lambda *shape, site=None: order.append("checked")
                        or fa4.Fa4Check(True, "ok", timings, 2.7e-4))
    monkeypatch.setattr(fa4, "make_importable", lambda: order.append("made importable"))
    monkeypatch.setattr(fa4, "prepare", lambda *shape: order.append("prepared"))
    worker = Worker(make_settings())  # still starting
    background = threading.Thread(target=lambda: order.append(worker._with_fa4(SDPA_CHOICE, gpu_engine()).single))
    background.start()
    deadline = time.monotonic() + 10
    while "checked" not in order and time.monotonic() < deadline:
        time.sleep(0.01)
    background.join(0.2)
    assert background.is_alive() and order == ["checked"]  # checked, then waiting for the start to end
    order.append("ready")
    started(worker)
    background.join(10)
    assert order == ["checked", "ready", "made importable", "prepared", "fa4"]

    failed = Worker(make_settings())
    failed.state = "failed"
    failed._settled.set()
    order.clear()
    assert failed._with_fa4(SDPA_CHOICE, gpu_engine()) is SDPA_CHOICE and "prepared" not in order


def test_an_engine_on_fa4_samples_as_on_sdpa(monkeypatch):
    """The whole engine with unmasked batches on FA4 (a stand-in computing SDPA on what it is handed): the same
    samples as on SDPA, and every unmasked attention call went to FA4."""
    import types

    import torch

    from f5_worker.engine.engine import Engine, EngineConfig
    from f5_worker.engine.sampler import SampleRequest, SamplingConfig

    calls = []

    def flash_attn_func(q, k, v, softmax_scale=None):  # (batch, frames, heads, dim), as FA4 takes them
        calls.append(q.shape)
        out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                               v.transpose(1, 2), scale=softmax_scale)
        return out.transpose(1, 2), None

    package, cute = types.ModuleType("flash_attn"), types.ModuleType("flash_attn.cute")
    package.__path__, cute.flash_attn_func = [], flash_attn_func
    monkeypatch.setitem(sys.modules, "flash_attn", package)
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    engines = {name: Engine(EngineConfig(model="tiny-random", device="cpu", attention=AttentionChoice(
        name, "sdpa", "test", "test"))) for name in ("sdpa", "fa4")}
    assert dict(engines["fa4"].sampler.backends) == {"single": "fa4", "batch": "torch"}
    cond = torch.randn(30, engines["sdpa"].model.num_channels)
    requests = [SampleRequest(cond, torch.arange(12), 80, seed) for seed in (1, 2)]
    config = SamplingConfig(steps=4)
    samples = {name: engine.sampler.sample(requests, config) for name, engine in engines.items()}
    arch = engines["fa4"].model.transformer.arch
    # every layer at each step, the two requests and their unguided twins in one call
    assert calls == [(4, 80, arch.heads, arch.dim_head)] * arch.depth * config.steps
    for got, expected in zip(samples["fa4"], samples["sdpa"]):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for engine in engines.values():
        engine.close()


def test_without_a_flash_attn_step_the_worker_still_checks_fa4_and_switches_once(monkeypatch, tmp_path):
    """``_finish_attention`` when the bootstrap had no flash-attn work left (flash-attn off, or none for this
    GPU): FA4's check alone decides, and the engine switches once, keeping its masked-batch kernel."""
    import threading

    from f5_worker.worker import Worker

    switched = []
    timings = {"fa4_1": 0.040, "sdpa_1": 0.048, "fa4_8": 0.663, "sdpa_8": 0.769}
    monkeypatch.setattr(fa4, "installed", lambda: "4.0.0b36")
    monkeypatch.setattr(fa4, "check", lambda heads, dim, frames, site=None: fa4.Fa4Check(True, "ok", timings, 2.7e-4))
    monkeypatch.setattr(fa4, "make_importable", lambda: None)
    monkeypatch.setattr(fa4, "prepare", lambda *shape: None)
    worker = Worker.__new__(Worker)
    worker.settings = SimpleNamespace(root=tmp_path, fa4="auto")
    worker._loaded, worker._settled = threading.Event(), threading.Event()
    worker._detect = lambda with_abi=True: gpu_fingerprint()
    worker._loaded.set()
    started(worker)
    worker.service = SimpleNamespace(engine=gpu_engine(
        attention=SDPA_CHOICE, use_attention=lambda choice, cache_dir: switched.append((choice, cache_dir))))
    worker._finish_attention(False)
    [(choice, cache_dir)] = switched
    assert (choice.single, choice.batch) == ("fa4", "flash_attn") and cache_dir == tmp_path / "cache" / "tuning"


def test_a_passed_check_is_kept_for_later_starts_on_the_same_runtime_and_gpu(monkeypatch, make_settings):
    """A warm start skips the check's child (as flash-attn's published installs skip theirs); another GPU model,
    driver or FA4 version checks again, and a failed check is not kept (its cause may have been passing)."""
    from f5_worker.worker import Worker

    runs = []
    h200 = {"fa4_1": 0.040, "sdpa_1": 0.048, "fa4_8": 0.663, "sdpa_8": 0.769}
    verdicts = iter([fa4.Fa4Check(False, "the check took longer than 300 s"), fa4.Fa4Check(True, "ok", h200, 2.7e-4),
                     fa4.Fa4Check(True, "ok", {**h200, "fa4_1": 0.050}, 2.7e-4)])
    monkeypatch.setattr(fa4, "installed", lambda site=None: "4.0.0b36")
    monkeypatch.setattr(fa4, "check", lambda *shape, site=None: runs.append(shape) or next(verdicts))
    monkeypatch.setattr(fa4, "make_importable", lambda: None)
    monkeypatch.setattr(fa4, "prepare", lambda *shape: None)
    engine = gpu_engine()
    settings = make_settings()

    def start(gpu_name="NVIDIA H200"):
        worker = started(Worker(settings, detect=lambda with_abi=True: gpu_fingerprint(gpu_name=gpu_name)))
        return worker._with_fa4(SDPA_CHOICE, engine)

    assert start().single == "sdpa" and len(runs) == 1  # failed: not kept
    assert start().single == "fa4" and len(runs) == 2  # passed: kept
    kept = start()
    assert kept.single == "fa4" and len(runs) == 2 and "0.663 ms" in kept.single_why  # the kept timings decide
    # Another GPU: checked again (and passed, slower alone there, so not chosen; kept too, under its own key).
    assert start(gpu_name="NVIDIA H100 80GB HBM3").single == "sdpa" and len(runs) == 3
    assert len(list((settings.root / "fa4" / "checks").glob("*.json"))) == 2
