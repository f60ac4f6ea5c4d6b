"""Frozen contrastive encoders (CLIP, CLAP, ULIP-2): registry, weights and adapters.

Public API (imported lazily so `import avsearch.encoders` does not import torch models):
- load_encoder(name, modalities=None, weights_dir=None, device=None) -> Encoder
- list_encoders() -> list[str]
- resolve_weight(file_name, weights_dir=None) -> Path   (weights folder, caches, then download)
- weights_status(weights_dir=None) -> list[WeightStatus]
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "load_encoder": "avsearch.encoders.registry",
    "list_encoders": "avsearch.encoders.registry",
    "get_spec": "avsearch.encoders.registry",
    "resolve_weight": "avsearch.encoders.weights",
    "weights_status": "avsearch.encoders.weights",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avsearch.encoders' has no attribute {name!r}")
