"""The index description as JSON: what `avsearch info` shows, in the shape the API returns."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from avsearch.media.walk import printable
from avsearch.modalities import CMCR
from avsearch.store.index import Index


def describe_index(index: Index) -> dict[str, Any]:
    """Counts, sizes, encoders, bridges and FAISS builds per modality, the files that could not be indexed
    and the search engine this machine uses; paths as printable text. Loads no model."""
    from avsearch.store.torch_search import planned_engine

    info = index.describe()
    manifest = info.manifest.to_dict()
    manifest["roots"] = [printable(r) for r in manifest["roots"]]
    # Modalities are kinds of file (audio, image, pointcloud), counted once; a backend's tables (C-MCR's
    # "audio", CAV-MAE's "cavmae_audio") are listed under `backends`, each naming the modality it holds.
    modalities: dict[str, dict[str, Any]] = {}
    backends: dict[str, list[dict[str, Any]]] = {}
    for table in info.modalities:
        entry = info.manifest.modalities.get(table.modality)
        backend = entry.backend if entry is not None else CMCR
        kind = info.manifest.kind(table.modality) if entry is not None else table.modality
        backends.setdefault(backend, []).append({**asdict(table), "table": table.modality, "modality": kind})
        seen = modalities.setdefault(kind, {"modality": kind, "files": 0, "bytes": 0, "backends": []})
        seen["files"], seen["bytes"] = max(seen["files"], table.files), max(seen["bytes"], table.bytes)
        seen["backends"].append(backend)
    return {
        "index_dir": printable(info.index_dir),
        "manifest": manifest,
        "modalities": list(modalities.values()),
        "backends": [{"backend": name, "tables": tables} for name, tables in backends.items()],
        "disk_bytes": info.disk_bytes,
        "failed": {printable(p): asdict(f) for p, f in info.failed.items()},
        "engine": planned_engine(index.models.device),
    }
