"""Model files on the network volume: the hub cache, legacy places, integrity, offline start.

The bootstrap builds a ``ModelsConfig`` (``catalog.plan`` gives its files) and calls
``ensure_models``; the report's ``paths`` are what F5-TTS is then given to load.
"""

from .catalog import DEFAULT_MODEL, MODELS, VOCOS, HubFile, LocalFile, parse_ref, plan
from .ensure import FileOutcome, ModelsConfig, ModelsReport, ensure_models
from ..errors import BadModelRef, ModelUnavailable

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "VOCOS",
    "HubFile",
    "LocalFile",
    "parse_ref",
    "plan",
    "FileOutcome",
    "ModelsConfig",
    "ModelsReport",
    "ensure_models",
    "BadModelRef",
    "ModelUnavailable",
]
