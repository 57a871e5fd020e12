"""F5-TTS's inference code, imported without its training code.

``f5_tts/model/__init__.py`` imports ``Trainer``, which needs wandb, accelerate,
datasets and ema_pytorch: none of which inference uses, all of which would bloat
the image. So the package ``f5_tts.model`` is registered with its real path but
without running its ``__init__``; the submodules and ``f5_tts.infer.utils_infer``
then import as usual, and only what inference needs must be installed.

Importing this module imports F5-TTS, which imports ``flash_attn`` when it is on
``sys.path``: call it only after the bootstrap has activated (or not) a verified one.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

__all__ = ["CFM", "DiT", "utils_infer", "model_utils", "get_tokenizer", "package_file"]


def _register_model_package() -> None:
    if "f5_tts.model" in sys.modules:
        return
    spec = importlib.util.find_spec("f5_tts")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("f5-tts is not installed (pip install f5-tts --no-deps, plus its inference dependencies)")
    package = types.ModuleType("f5_tts.model")
    package.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "model")]
    package.__package__ = "f5_tts.model"
    sys.modules["f5_tts.model"] = package


_register_model_package()

from f5_tts.model.backbones.dit import DiT  # noqa: E402
from f5_tts.model.cfm import CFM  # noqa: E402
from f5_tts.model import utils as model_utils  # noqa: E402
from f5_tts.model.utils import get_tokenizer  # noqa: E402

# utils_infer does `from f5_tts.model import CFM`: give the registered package what it exports.
sys.modules["f5_tts.model"].CFM = CFM
sys.modules["f5_tts.model"].DiT = DiT

from f5_tts.infer import utils_infer  # noqa: E402


def package_file(relative: str) -> Path:
    """A file shipped inside the f5-tts package, e.g. ``configs/F5TTS_v1_Base.yaml``."""
    spec = importlib.util.find_spec("f5_tts")
    return Path(next(iter(spec.submodule_search_locations))) / relative
