"""avsearch: cross-modal search over sound, pictures, text and 3D shapes.

Data flows one way: files -> encoders (native, L2-normalised vectors) -> bridge (C-MCR projectors)
-> shared space -> store/index -> queries. The public Python API is re-exported here lazily so that
`import avsearch` stays cheap (no torch import until a model or bridge is used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "AvsearchError": "avsearch.errors",
    "Bridge": "avsearch.bridge.model",
    "load_bridge": "avsearch.bridge.io",
    "save_bridge": "avsearch.bridge.io",
    "import_released": "avsearch.bridge.io",
    "TrainConfig": "avsearch.bridge.config",
    "load_train_config": "avsearch.bridge.config",
    "train_bridge": "avsearch.bridge.train",
    "retrieval_metrics": "avsearch.evaluation.retrieval",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avsearch' has no attribute {name!r}")
