#!/usr/bin/env python3
"""Does the kit fit the machine it landed on? Run after `source bench/gpu_env.sh` (`bash bench/gpu.sh kit`).

    python3 bench/kit_check.py [--site /tmp/deps]

- every distribution installed from .device/wheels (in --site) has its requirements met by what this
  interpreter can import (the machine's own packages or the kit's), extras and f5-tts's training stack aside;
- the modules the worker and the benchmarks import do import (each in this one process);
- the versions of the machine's own packages the kit leans on, for the record.
Exits 1 when a requirement is unmet or an import fails.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import platform
import sys
import types
import warnings
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# f5-tts is installed --no-deps on purpose: its training and UI requirements are never imported.
NOT_CHECKED = {"f5-tts"}
# Requirements that nothing here imports (traced: bench/device-requirements.txt), so the kit leaves them out.
NOT_IMPORTED = {
    ("runpod", "boto3"): "bucket uploads only, imported when a bucket is configured",
    ("runpod", "prettytable"): "runpod's CLI", ("runpod", "inquirerpy"): "runpod's CLI", ("runpod", "watchdog"): "runpod's CLI",
    ("email-validator", "dnspython"): "deliverability checks, imported when asked for",
    ("cffi", "pycparser"): "parsing C declarations; the kit's extensions come compiled",
    ("librosa", "audioread"): "decoding compressed files; librosa.filters does not",
}
IMPORTS = [
    # f5-worker serve
    "fastapi", "uvicorn", "pydantic", "starlette", "soundfile", "pypinyin", "rjieba", "pydub",
    "f5_worker.cli", "f5_worker.serving.api",
    # f5-worker runpod
    "runpod", "runpod.serverless", "runpod.serverless.modules.rp_fastapi",
    # the benchmarks' F5-TTS (bench/synthesis.py, sampler_speed.py: CFM.sample, utils_infer.infer_batch_process)
    "f5_tts.model.modules", "f5_tts.model.backbones.dit", "f5_tts.model.cfm", "x_transformers", "vocos", "encodec",
    "librosa.filters", "torchdiffeq",
]
THE_MACHINES = ["torch", "torchaudio", "numpy", "scipy", "numba", "typing-extensions", "anyio", "click", "h11",
                "aiohttp", "httpx", "huggingface-hub", "safetensors", "packaging", "pyyaml", "annotated-doc",
                "matplotlib", "transformers", "einops", "torchdiffeq"]


def register_f5_tts_model() -> None:
    """``f5_tts/model/__init__.py`` imports its Trainer (wandb, accelerate, datasets...): register the package
    without running it, as anything here that imports F5-TTS's inference modules must."""
    spec = importlib.util.find_spec("f5_tts")
    if spec is None or "f5_tts.model" in sys.modules:
        return
    package = types.ModuleType("f5_tts.model")
    package.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "model")]
    sys.modules["f5_tts.model"] = package


def f5_reference_imports() -> str | None:
    """The benchmarks' way in (bench/common.py: tests/lib/support/f5_reference.py, which also imports
    f5_tts.infer.utils_infer); the failure, or None."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import common

        common.f5_reference()
    except BaseException as exc:  # noqa: BLE001  SystemExit included: this is what it is here to show
        return f"{type(exc).__name__}: {exc}"
    return None


def unmet(site: Path) -> list[str]:
    problems = []
    for dist in md.distributions(path=[str(site)]):
        name = canonicalize_name(dist.metadata["Name"])
        if name in NOT_CHECKED:
            continue
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            if (name, canonicalize_name(req.name)) in NOT_IMPORTED:
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                problems.append(f"{name}: needs {req}, which is not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{name}: needs {req}, found {req.name} {have}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=Path("/tmp/deps"), help="where gpu_env.sh installed the kit")
    args = parser.parse_args()
    print(f"python {platform.python_version()} at {sys.executable}; kit site {args.site}")
    failures = 0
    problems = unmet(args.site)
    for problem in problems:
        print(f"  UNMET {problem}")
    print(f"requirements of {sum(1 for _ in md.distributions(path=[str(args.site)]))} kit distributions: "
          f"{'all met' if not problems else f'{len(problems)} unmet'}")
    failures += len(problems)
    warnings.simplefilter("ignore")  # pydub's escape sequences, its ffmpeg notice
    register_f5_tts_model()
    for module in IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken import of any kind is what this is here to show
            failures += 1
            print(f"  IMPORT FAILED {module}: {type(exc).__name__}: {exc}")
    print(f"imports: {len(IMPORTS) - sum(1 for m in IMPORTS if m not in sys.modules)} of {len(IMPORTS)} ok")
    problem = f5_reference_imports()
    failures += problem is not None
    print(f"F5-TTS's modules as the benchmarks import them (support.f5_reference): {problem or 'ok'}")
    versions = []
    for name in THE_MACHINES:
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"{name} (absent)")
    print("the machine's own: " + ", ".join(versions))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
