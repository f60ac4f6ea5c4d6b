"""avsearch: cross-modal search over sound, pictures, text and 3D shapes.

Data flows one way: files -> encoders (native, L2-normalised vectors) -> bridge (C-MCR projectors)
-> shared space -> store/index -> queries. The public Python API is re-exported here lazily so that
`import avsearch` stays cheap (no torch import until a model or bridge is used):

    import avsearch
    avsearch.index_folder("media", "indexes/default")            # released bridges by default
    index = avsearch.Index.open("indexes/default")
    for result in avsearch.query(index, audio="dog.wav", target="image", k=5):
        print([(hit.path, round(hit.score, 3)) for hit in result.hits])
    avsearch.classify3d(["model.ply"])                           # ModelNet40 labels, top 5
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # indexes and search
    "Index": "avsearch.store.index",
    "index_folder": "avsearch.indexing.pipeline",
    "query": "avsearch.search.query",  # (avsearch.search is the subpackage)
    "SearchEngine": "avsearch.search.engine",
    "ResultSet": "avsearch.search.results",
    "Hit": "avsearch.search.results",
    "classify3d": "avsearch.search.classify3d",
    "load_classifier": "avsearch.search.classify3d",
    # bridges: train, open, project (Bridge.project)
    "Bridge": "avsearch.bridge.model",
    "open_bridge": "avsearch.bridge.io",
    "load_bridge": "avsearch.bridge.io",
    "save_bridge": "avsearch.bridge.io",
    "import_released": "avsearch.bridge.io",
    "TrainConfig": "avsearch.bridge.config",
    "load_train_config": "avsearch.bridge.config",
    "train_bridge": "avsearch.bridge.train",
    "train_from_folder": "avsearch.bridge.train",
    # encoders and evaluation
    "load_encoder": "avsearch.encoders.registry",
    "retrieval_metrics": "avsearch.evaluation.retrieval",
    "AvsearchError": "avsearch.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
