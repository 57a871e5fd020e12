"""Small stand-ins for the real model files, a fake hub serving them, and a worker start in a subprocess."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .fakehub import FakeHub

CHILD = Path(__file__).with_name("child.py")
F5 = "SWivid/F5-TTS"
VOCOS = "charactr/vocos-mel-24khz"
CKPT = "F5TTS_v1_Base/model_1250000.safetensors"
VOCAB = "F5TTS_v1_Base/vocab.txt"


def safetensors_bytes(values: int = 64) -> bytes:
    """A real safetensors file: one float32 tensor, as the F5-TTS checkpoint holds hundreds of."""
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "ema_model.transformer.weight": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}})
    header += " " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header.encode() + struct.pack(f"<{values}f", *range(values))


def torch_bin_bytes() -> bytes:
    """A zip-format torch state dict, like vocos's pytorch_model.bin."""
    import torch

    buf = io.BytesIO()
    torch.save({"backbone.embed.weight": torch.arange(12.0).reshape(3, 4)}, buf)
    return buf.getvalue()


@pytest.fixture(scope="session")
def model_files() -> dict[tuple[str, str], bytes]:
    return {
        (F5, CKPT): safetensors_bytes(),
        (F5, VOCAB): "".join(f"{c}\n" for c in " abcdefghijklmnopqrstuvwxyz").encode(),
        (VOCOS, "config.yaml"): b"feature_extractor:\n  class_path: vocos.feature_extractors.MelSpectrogramFeatures\n",
        (VOCOS, "pytorch_model.bin"): torch_bin_bytes(),
    }


@pytest.fixture
def hub(model_files):
    with FakeHub() as fake:
        for (repo, name), data in model_files.items():
            fake.add(repo, name, data)
        yield fake


@dataclass
class World:
    """One worker's view: a volume, a home, and where the hub is."""

    tmp: Path
    endpoint: str

    @property
    def volume(self) -> Path:
        return self.tmp / "volume"

    @property
    def cache(self) -> Path:
        return self.volume / "huggingface-cache" / "hub"

    def config(self, **extra) -> dict:
        return {"cache_dir": str(self.cache), "work_dir": str(self.volume / "f5-worker" / "models"), **extra}

    def env(self) -> dict[str, str]:
        # Nothing of the outer environment's HF_* or proxies: only what a fresh worker would have.
        return {"PATH": os.environ["PATH"], "HOME": str(self.tmp / "home"), "HF_ENDPOINT": self.endpoint}

    def start(self, name: str = "start", **extra) -> dict:
        """Run the model step in a new process and return its result."""
        proc = self.spawn(name, **extra)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return json.loads(out)

    def spawn(self, name: str, **extra) -> subprocess.Popen:
        cfg_file = self.tmp / f"{name}.json"
        cfg_file.write_text(json.dumps(self.config(**extra)))
        return subprocess.Popen([sys.executable, str(CHILD), str(cfg_file)], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def world(tmp_path, hub) -> World:
    return World(tmp_path, hub.endpoint)


@pytest.fixture
def unreachable() -> str:
    """An endpoint on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
