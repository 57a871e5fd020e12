"""What the engine uses of F5-TTS's ``CFM``: the DiT, the mel spectrogram, the vocabulary.

The state dict is ``CFM``'s (``transformer.*``; the mel transform holds no state), so F5-TTS's
checkpoints load into it after F5-TTS's own key handling (``checkpoint.read_state_dict``). Sampling
lives in ``engine.sampler``.
"""

from __future__ import annotations

from torch import nn

from .dit import DiT
from .mel import MelSpec

__all__ = ["F5TTS"]


class F5TTS(nn.Module):
    def __init__(self, transformer: DiT, vocab_char_map: dict[str, int] | None, mel_spec: MelSpec | None = None):
        super().__init__()
        self.transformer = transformer
        self.mel_spec = mel_spec or MelSpec()
        self.num_channels = self.mel_spec.n_mel_channels
        self.vocab_char_map = vocab_char_map
