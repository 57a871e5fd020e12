#!/usr/bin/env python3
"""Write a random-weight F5-TTS checkpoint and Vocos vocoder in their published file formats.

    python bench/make_random_checkpoint.py DIR [--model F5TTS_v1_Base]

Lays them out as a plain directory of checkpoints, the way an old setup or a baked image holds them:
DIR/SWivid/F5-TTS/<model>/model_1250000.safetensors (EMA keys, as F5-TTS publishes), .../vocab.txt,
DIR/charactr/vocos-mel-24khz/{config.yaml,pytorch_model.bin}. Pointing F5_WORKER_LEGACY_MODEL_DIRS at DIR
makes the worker migrate them into its hub cache and load them through F5-TTS's own loader: the real-model
path, end to end, with no download. The weights are random: the audio is noise.
"""

import argparse
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from f5_worker.engine import f5lib
from f5_worker.engine.models import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, VOCOS_MEL_24KHZ, ModelFiles, build_model, build_vocoder

CHECKPOINT = {"F5TTS_v1_Base": "model_1250000.safetensors", "F5TTS_Base": "model_1200000.safetensors"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--model", default="F5TTS_v1_Base", choices=sorted(CHECKPOINT))
    args = parser.parse_args()

    model_dir = args.dir / "SWivid" / "F5-TTS" / args.model
    model_dir.mkdir(parents=True, exist_ok=True)
    cfm = build_model(args.model, ModelFiles(), attn_backend="torch", attn_mask_enabled=False, device="cpu")
    state = {f"ema_model.{k}": v.contiguous() for k, v in cfm.state_dict().items()}
    save_file(state, str(model_dir / CHECKPOINT[args.model]))
    shutil.copy(f5lib.package_file("infer/examples/vocab.txt"), model_dir / "vocab.txt")

    vocos_dir = args.dir / "charactr" / "vocos-mel-24khz"
    vocos_dir.mkdir(parents=True, exist_ok=True)
    vocoder = build_vocoder(args.model, ModelFiles(), device="cpu")
    torch.save(vocoder.state_dict(), vocos_dir / "pytorch_model.bin")
    config = {
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH,
                                            "n_mels": N_MELS, "padding": "center"}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": {"input_channels": N_MELS, **VOCOS_MEL_24KHZ}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": VOCOS_MEL_24KHZ["dim"], "n_fft": N_FFT, "hop_length": HOP_LENGTH, "padding": "same"}},
    }
    (vocos_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(args.dir)


if __name__ == "__main__":
    main()
