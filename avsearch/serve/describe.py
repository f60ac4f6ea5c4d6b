"""The index description as JSON: what `avsearch info` shows, in the shape the API returns."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from avsearch.media.walk import printable
from avsearch.store.index import Index


def describe_index(index: Index) -> dict[str, Any]:
    """Counts, sizes, encoders, bridges and FAISS builds per modality, the files that could not be indexed
    and the search engine this machine uses; paths as printable text. Loads no model."""
    from avsearch.store.torch_search import planned_engine

    info = index.describe()
    manifest = info.manifest.to_dict()
    manifest["roots"] = [printable(r) for r in manifest["roots"]]
    return {
        "index_dir": printable(info.index_dir),
        "manifest": manifest,
        "modalities": [asdict(m) for m in info.modalities],
        "disk_bytes": info.disk_bytes,
        "failed": {printable(p): asdict(f) for p, f in info.failed.items()},
        "engine": planned_engine(index.models.device),
    }
