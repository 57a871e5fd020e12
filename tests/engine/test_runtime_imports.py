"""The worker's runtime imports: F5-TTS's module tree (seconds of imports at every start) is the tests' reference only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from f5_worker.engine.models import TINY_RANDOM, TINY_VOCOS, ModelFiles, build_model, build_vocoder
from f5_worker.engine.text import VOCAB

# F5-TTS and what its modules import: x-transformers (einx, torch._dynamo), vocos (encodec), librosa (scipy),
# matplotlib, transformers, torchdiffeq; rjieba and pypinyin load for Chinese text only. torch's compiler
# stack (torch._dynamo, sympy) would come with PyTorch's meta-device initialisers: nn.layers skips them.
NEVER = ["f5_tts", "x_transformers", "einx", "vocos", "encodec", "librosa", "scipy", "matplotlib", "transformers",
         "torchdiffeq", "rjieba", "pypinyin", "sympy", "torch._dynamo"]

SYNTHESIS = """
import json, sys
from pathlib import Path
import numpy as np
from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
from f5_worker.engine.models import ModelFiles
engine = Engine(EngineConfig(model="tiny-random", files=ModelFiles(*[Path(p) if p else None for p in sys.argv[1:]]),
                             device="cpu"))
voice = engine.reference((0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32), "Reference words")
audio = engine.synthesize(voice, "Hello world, this is a test. And a second sentence.", SynthesisParams(seed=1, nfe_step=2))
engine.close()
print(json.dumps({"samples": len(audio), "random": engine.random_weights, "modules": sorted(sys.modules)}))
"""


def published_files(directory) -> ModelFiles:
    """tiny-random written in F5-TTS's and vocos' published formats (with the worker's own modules)."""
    model = build_model(TINY_RANDOM, ModelFiles(), device="cpu")
    save_file({f"ema_model.{k}": v.clone() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))
    vocoder = build_vocoder(TINY_RANDOM, ModelFiles(), device="cpu")
    torch.save(vocoder.state_dict(), directory / "pytorch_model.bin")
    (directory / "config.yaml").write_text(TINY_VOCOS.to_yaml())
    return ModelFiles(directory / "model.safetensors", VOCAB, directory / "config.yaml", directory / "pytorch_model.bin")


@pytest.mark.parametrize("weights", ["random", "checkpoint"])
def test_a_tiny_engine_synthesises_without_importing_f5_tts_or_its_dependencies(tmp_path, weights):
    files = published_files(tmp_path) if weights == "checkpoint" else ModelFiles()
    args = [str(p) if p else "" for p in (files.checkpoint, files.vocab, files.vocoder_config, files.vocoder_weights)]
    proc = subprocess.run([sys.executable, "-c", SYNTHESIS, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["samples"] > 24_000 and result["random"] == (weights == "random")
    modules = set(result["modules"])
    assert [name for name in NEVER if name in modules] == []
    assert "torch" in modules  # the check sees what was imported
