"""The worker's runtime imports: F5-TTS's module tree (seconds of imports at every start) is the tests' reference only."""

from __future__ import annotations

import json
import subprocess
import sys

# F5-TTS and what its modules import: x-transformers (einx), vocos (encodec), librosa (scipy), matplotlib,
# transformers, torchdiffeq; rjieba and pypinyin load for Chinese text only.
NEVER = ["f5_tts", "x_transformers", "einx", "vocos", "encodec", "librosa", "scipy", "matplotlib", "transformers",
         "torchdiffeq", "rjieba", "pypinyin"]

SYNTHESIS = """
import json, sys
import numpy as np
from f5_worker.engine.engine import Engine, EngineConfig, SynthesisParams
engine = Engine(EngineConfig(model="tiny-random", device="cpu"))
voice = engine.reference((0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32), "Reference words")
audio = engine.synthesize(voice, "Hello world, this is a test. And a second sentence.", SynthesisParams(seed=1, nfe_step=2))
engine.close()
print(json.dumps({"samples": len(audio), "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def test_a_tiny_engine_synthesises_without_importing_f5_tts_or_its_dependencies():
    proc = subprocess.run([sys.executable, "-c", SYNTHESIS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["samples"] > 24_000
    assert [name for name in NEVER if name in result["modules"]] == []
    assert "torch" in result["modules"]  # the check sees what was imported
