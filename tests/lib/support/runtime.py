"""Fingerprints for tests: this interpreter's Python and platform (pip must accept the wheels),
with a GPU and torch build stated rather than probed, since CI has no GPU."""

from __future__ import annotations

import os
import sys

from f5_worker.runtime.fingerprint import Fingerprint

from .wheels import PLATFORM


def gpu_fingerprint(**changes) -> Fingerprint:
    values = dict(
        torch_version="2.8.0+cu128",
        torch_cuda="12.8",
        cxx11abi=True,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        platform=PLATFORM,
        glibc=os.confstr("CS_GNU_LIBC_VERSION").split()[1],
        compute_capability="9.0",
        driver="570.124.06",
        gpu_name="NVIDIA H100 80GB HBM3 (stated by the test)",
        driver_cuda="12.8",
    )
    values.update(changes)
    return Fingerprint(**values)
