"""The worker's own inference graph of F5-TTS and Vocos: their parameter names, none of their imports.

F5-TTS's module tree imports x-transformers (einx, torch._dynamo), vocos (encodec), librosa,
matplotlib and transformers: seconds of imports at every start, for a few hundred lines of modules.
These modules compute the same functions from the same checkpoints (``tests/engine/test_nn.py``
holds them equal to F5-TTS's and vocos' own), and import torch and torchaudio only.
"""

from .attention import BACKENDS, Attention
from .dit import DiT, DiTArch, DiTBlock, conv_position_embedding
from .mel import MelSpec
from .model import F5TTS
from .rotary import RotaryEmbedding, rotate
from .vocos import Vocos, VocosConfig

__all__ = ["Attention", "BACKENDS", "DiT", "DiTArch", "DiTBlock", "F5TTS", "MelSpec", "RotaryEmbedding", "Vocos",
           "VocosConfig", "conv_position_embedding", "rotate"]
