#!/usr/bin/env python3
"""Write a random-weight F5-TTS checkpoint and Vocos vocoder in their published file formats.

    python bench/make_random_checkpoint.py DIR [--model F5TTS_v1_Base]

Lays them out as a plain directory of checkpoints, the way an old setup or a baked image holds them:
DIR/SWivid/F5-TTS/<model>/model_1250000.safetensors (EMA keys, as F5-TTS publishes), .../vocab.txt,
DIR/charactr/vocos-mel-24khz/{config.yaml,pytorch_model.bin}. Pointing F5_WORKER_LEGACY_MODEL_DIRS at DIR
makes the worker migrate them into its hub cache and load them through its checkpoint loader: the
real-model path, end to end, with no download. The weights are random (the worker's seeded ones, built
with its own modules, which carry F5-TTS's and vocos' parameter names): the audio is noise.
"""

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from f5_worker.engine.models import VOCOS_MEL_24KHZ, ModelFiles, build_model, build_vocoder
from f5_worker.engine.text import VOCAB

CHECKPOINT = {"F5TTS_v1_Base": "model_1250000.safetensors", "F5TTS_Base": "model_1200000.safetensors"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--model", default="F5TTS_v1_Base", choices=sorted(CHECKPOINT))
    args = parser.parse_args()

    model_dir = args.dir / "SWivid" / "F5-TTS" / args.model
    model_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(args.model, ModelFiles(), device="cpu")
    # Cloned: the loader's fused q/k/v projection makes to_q, to_k and to_v views of one tensor, and
    # safetensors stores no shared memory. float32, as F5-TTS publishes.
    state = {f"ema_model.{k}": v.detach().float().clone() for k, v in model.state_dict().items()}
    save_file(state, str(model_dir / CHECKPOINT[args.model]))
    shutil.copy(VOCAB, model_dir / "vocab.txt")

    vocos_dir = args.dir / "charactr" / "vocos-mel-24khz"
    vocos_dir.mkdir(parents=True, exist_ok=True)
    vocoder = build_vocoder(args.model, ModelFiles(), device="cpu")
    torch.save(vocoder.state_dict(), vocos_dir / "pytorch_model.bin")
    (vocos_dir / "config.yaml").write_text(VOCOS_MEL_24KHZ.to_yaml())
    print(args.dir)


if __name__ == "__main__":
    main()
