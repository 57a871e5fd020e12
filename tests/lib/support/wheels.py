"""Build small flash_attn wheels shaped like upstream's, for the install path's tests.

The package computes attention with torch SDPA (so the numeric check passes on a
CPU), and its ``flash_attn_2_cuda`` module plays the compiled extension; each
``Variant`` breaks it the way real wheels break.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import io
import sys
import sysconfig
import zipfile
from pathlib import Path

PYTHON_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")


class Variant(enum.Enum):
    GOOD = "BIAS = 0.0"
    # What a wheel built for another torch does on import.
    IMPORT_ERROR = 'raise ImportError("flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi")'
    WRONG_NUMERICS = "BIAS = 0.5"
    # A damaged extension can take the interpreter down with it.
    SEGFAULT = "import ctypes\nctypes.string_at(0)"
    HANG = "import time\ntime.sleep(3600)"
    # Verification that takes as long as the test wants: importing waits for the file $F5_TEST_GATE.
    GATED = ("import os, time\nwhile not os.path.exists(os.environ['F5_TEST_GATE']):\n    time.sleep(0.05)\n"
             "BIAS = 0.0")


INTERFACE = '''
import torch
import torch.nn.functional as F

import flash_attn_2_cuda as _ext


def _sdpa(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **kwargs):
    return _sdpa(q, k, v) + _ext.BIAS


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **kwargs):
    bounds = cu_seqlens_q.tolist()
    parts = [_sdpa(q[a:b][None], k[a:b][None], v[a:b][None])[0] for a, b in zip(bounds, bounds[1:])]
    return torch.cat(parts) + _ext.BIAS
'''


def upstream_name(version: str, cuda: str = "12", torch: str = "2.8", abi: bool = True,
                  python_tag: str = PYTHON_TAG, platform: str = PLATFORM, name_version: str | None = None) -> str:
    return (f"flash_attn-{name_version or version}+cu{cuda}torch{torch}cxx11abi{str(abi).upper()}"
            f"-{python_tag}-{python_tag}-{platform}.whl")


def wheel_bytes(version: str, variant: Variant = Variant.GOOD, python_tag: str = PYTHON_TAG, platform: str = PLATFORM) -> bytes:
    """A wheel whose METADATA says ``version`` (no local label, like upstream's)."""
    dist_info = f"flash_attn-{version}.dist-info"
    files = {
        "flash_attn/__init__.py": f'__version__ = "{version}"\n\nfrom flash_attn.flash_attn_interface import flash_attn_func, flash_attn_varlen_func\n',
        "flash_attn/flash_attn_interface.py": INTERFACE,
        "flash_attn_2_cuda.py": variant.value + "\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: flash_attn\nVersion: {version}\nSummary: test stand-in\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: f5-worker-tests\nRoot-Is-Purelib: false\nTag: {python_tag}-{python_tag}-{platform}\n",
        f"{dist_info}/top_level.txt": "flash_attn\nflash_attn_2_cuda\n",
    }
    record = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
            wheel.writestr(name, data)
        record.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return buffer.getvalue()


def write_wheel(directory: Path, filename: str, version: str, variant: Variant = Variant.GOOD) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_bytes(wheel_bytes(version, variant))
    return path


def corrupt(data: bytes) -> bytes:
    """Flip bytes inside the first member's compressed data: the zip still opens, its CRC fails."""
    middle = 60
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:]


# -- added for issue 15 -------------------------------------------------------------------------------

# A check failing at import with a message that reads like a timeout: decisions must follow the type.
MISLEADING_IMPORT_ERROR = 'raise ImportError("the check did not finish within 1 s (only the words of a timeout)")'


class MoreVariant(enum.Enum):
    MISLEADING = MISLEADING_IMPORT_ERROR


def install_into(site: Path, version: str, variant: Variant | MoreVariant = Variant.GOOD) -> Path:
    """The stand-in unpacked into ``site`` as ``pip install --target`` lays it out (a base environment's
    site-packages, for the tests that put one on sys.path)."""
    site.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(wheel_bytes(version, variant))) as wheel:
        wheel.extractall(site)
    return site


def foreign_wheel_bytes(project: str, version: str, python_tag: str = PYTHON_TAG, platform: str = PLATFORM) -> bytes:
    """A well-formed wheel of another project: readable, installable, and not flash-attn."""
    module = project.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": "",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: f5-worker-tests\nRoot-Is-Purelib: false\nTag: {python_tag}-{python_tag}-{platform}\n",
        f"{dist_info}/RECORD": "",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return buffer.getvalue()
