"""Live probes that fill in a ``Fingerprint`` for this process.

Each probe is bounded in time and returns ``None`` for what it cannot tell:
a CPU-only host, a container without a driver, or a Python without torch is a
normal state. GPU facts come from NVML (nvidia-ml-py); when NVML is missing or
fails, the kernel module's ``/proc/driver/nvidia/version``, then ``nvidia-smi``.

Torch's version and CUDA can be read from its installed ``torch/version.py``, so
a warm start activates flash-attn before paying for ``import torch``; the C++ ABI
is known only to torch itself, so resolving a new wheel imports torch.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .fingerprint import Fingerprint

__all__ = ["detect", "TorchFacts", "GpuFacts", "torch_facts", "gpu_facts"]

PROBE_TIMEOUT_S = 10.0
T = TypeVar("T")


def _bounded(fn: Callable[[], T], timeout: float = PROBE_TIMEOUT_S) -> T | None:
    """Run ``fn`` in a daemon thread; give up (``None``) after ``timeout`` seconds.

    NVML calls can block for a long time on a wedged driver; a daemon thread lets
    the bootstrap move on and fall back instead of hanging the cold start.
    """
    result: list = []

    def run() -> None:
        try:
            result.append(fn())
        except Exception:  # any failure of a probe means "cannot tell"
            result.append(None)

    thread = threading.Thread(target=run, daemon=True, name=f"probe-{getattr(fn, '__name__', 'fn')}")
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


# -- torch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchFacts:
    version: str | None
    cuda: str | None
    cxx11abi: bool | None


def _torch_facts_from_files() -> TorchFacts | None:
    """Version and CUDA from torch's generated ``version.py``, without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    values: dict = {}
    for node in ast.parse((root / "version.py").read_text()).body:
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and value is not None and target.id in ("__version__", "cuda"):
            values[target.id] = ast.literal_eval(value)
    if "__version__" not in values:
        return None
    return TorchFacts(version=values["__version__"], cuda=values.get("cuda"), cxx11abi=None)


def _torch_facts_by_import() -> TorchFacts:
    # Only torch itself knows its C++ ABI: no installed file records it (TorchConfig.cmake
    # stopped doing so in 2.7). Importing it here costs nothing extra: the worker imports it next.
    import torch

    return TorchFacts(
        version=torch.__version__, cuda=torch.version.cuda, cxx11abi=bool(torch._C._GLIBCXX_USE_CXX11_ABI)
    )


def torch_facts(with_abi: bool = True) -> TorchFacts:
    if importlib.util.find_spec("torch") is None:
        return TorchFacts(None, None, None)
    if not with_abi:
        try:
            facts = _torch_facts_from_files()
            if facts is not None:
                return facts
        except (OSError, SyntaxError, ValueError):
            pass
    try:
        return _torch_facts_by_import()
    except Exception:  # a torch that cannot import is "no usable torch", not a crash
        return TorchFacts(None, None, None)


# -- GPU and driver ------------------------------------------------------------------


@dataclass(frozen=True)
class GpuFacts:
    name: str | None = None
    compute_capability: str | None = None
    driver: str | None = None
    driver_cuda: str | None = None
    source: str | None = None  # which probe answered: nvml, proc, nvidia-smi


def _nvml() -> GpuFacts | None:
    import pynvml  # nvidia-ml-py

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda_int = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        driver_cuda = f"{cuda_int // 1000}.{(cuda_int % 1000) // 10}"
        if pynvml.nvmlDeviceGetCount() == 0:
            return GpuFacts(driver=_text(driver), driver_cuda=driver_cuda, source="nvml")
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        return GpuFacts(
            name=_text(pynvml.nvmlDeviceGetName(handle)),
            compute_capability=f"{major}.{minor}",
            driver=_text(driver),
            driver_cuda=driver_cuda,
            source="nvml",
        )
    finally:
        pynvml.nvmlShutdown()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_PROC_VERSION = re.compile(r"Kernel Module(?: for [\w.]+)?\s+(\d+\.\d+(?:\.\d+)?)")


def parse_proc_driver_version(text: str) -> str | None:
    match = _PROC_VERSION.search(text)
    return match.group(1) if match else None


def _proc() -> GpuFacts | None:
    path = Path("/proc/driver/nvidia/version")
    if not path.is_file():
        return None
    driver = parse_proc_driver_version(path.read_text())
    return GpuFacts(driver=driver, source="proc") if driver else None


def parse_nvidia_smi_csv(text: str) -> GpuFacts | None:
    line = text.strip().splitlines()[0] if text.strip() else ""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 3:
        return None
    name, cap, driver = parts
    return GpuFacts(
        name=name or None,
        compute_capability=cap if re.match(r"^\d+\.\d+$", cap) else None,
        driver=driver or None,
        source="nvidia-smi",
    )


def _nvidia_smi() -> GpuFacts | None:
    proc = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
    )
    return parse_nvidia_smi_csv(proc.stdout) if proc.returncode == 0 else None


def gpu_facts() -> GpuFacts:
    nvml = _bounded(_nvml)
    if nvml is not None and nvml.compute_capability:
        return nvml
    # The kernel module knows the driver but not the GPU; nvidia-smi knows both.
    smi = _bounded(_nvidia_smi)
    if smi is not None and smi.compute_capability:
        return smi
    return nvml or _bounded(_proc) or smi or GpuFacts()


# -- the rest ------------------------------------------------------------------------


def glibc_version() -> str | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
    except (ValueError, OSError, AttributeError):
        return None
    return version if name == "glibc" else None


def platform_tag() -> str:
    # The same rule setup.py and bdist_wheel use: sysconfig's platform with - and . as _.
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


@functools.lru_cache(maxsize=2)
def detect(with_abi: bool = True) -> Fingerprint:
    """The fingerprint of this process (cached: the runtime does not change while we run).

    ``with_abi=False`` skips ``import torch`` and leaves ``cxx11abi`` unknown: enough
    for ``Fingerprint.runtime_key()``, so a warm start can find and activate its
    published install before torch is imported.
    """
    torch = torch_facts(with_abi)
    gpu = gpu_facts()
    return Fingerprint(
        torch_version=torch.version,
        torch_cuda=torch.cuda,
        cxx11abi=torch.cxx11abi,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        platform=platform_tag(),
        glibc=glibc_version(),
        compute_capability=gpu.compute_capability,
        driver=gpu.driver,
        gpu_name=gpu.name,
        driver_cuda=gpu.driver_cuda,
    )
