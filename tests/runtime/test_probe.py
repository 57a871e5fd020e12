"""Probes on this machine (no GPU, torch's CPU run) and the parsers behind the fallbacks."""

import sys

from f5_worker.runtime import probe

PROC_VERSION = """NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22-I3-AE18-09-3)  Thu Oct 23 2025
GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)
"""


def test_proc_driver_version():
    assert probe.parse_proc_driver_version(PROC_VERSION) == "580.159.04"
    assert probe.parse_proc_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19") == "535.104.05"
    assert probe.parse_proc_driver_version("garbage") is None


def test_nvidia_smi_csv():
    facts = probe.parse_nvidia_smi_csv("NVIDIA H100 80GB HBM3, 9.0, 580.159.04\n")
    assert (facts.name, facts.compute_capability, facts.driver) == ("NVIDIA H100 80GB HBM3", "9.0", "580.159.04")
    assert probe.parse_nvidia_smi_csv("") is None


def test_torch_facts_without_import_agree_with_torch_itself():
    quick = probe.torch_facts(with_abi=False)
    full = probe.torch_facts(with_abi=True)
    import torch

    assert (quick.version, quick.cuda) == (full.version, full.cuda) == (torch.__version__, torch.version.cuda)
    assert quick.cxx11abi is None and full.cxx11abi == bool(torch._C._GLIBCXX_USE_CXX11_ABI)


def test_bounded_probe_gives_up_on_a_hang():
    import threading

    never = threading.Event()
    assert probe._bounded(lambda: never.wait(60), timeout=0.2) is None
    assert probe._bounded(lambda: 1 / 0) is None
    assert probe._bounded(lambda: 42) == 42


def test_detect_on_this_machine_has_no_gpu_and_is_not_an_error():
    fp = probe.detect()
    assert fp.compute_capability is None and fp.gpu_name is None
    assert fp.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert fp.platform.startswith("linux_") and fp.glibc
