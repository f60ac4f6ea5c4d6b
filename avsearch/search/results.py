"""Typed search results, shared by the CLI and any later HTML gallery or HTTP API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from avsearch.media.walk import printable


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    path: str
    modality: str
    score: float  # cosine similarity in the route's space (-1..1); comparable within one ResultSet only
    size: int | None = None
    mtime_ns: int | None = None
    id: str = ""  # the row key (32 hex digits): names the item to `query --id` and the HTTP API, never a path


@dataclass
class ResultSet:
    """The hits of one query against one target modality."""

    query: str  # the file path or the text
    query_modality: str
    target: str
    space: str  # "clip", "clap" (native) or "shared:<bridge name>"
    index_kind: str  # "flat", "ivf_flat", ... or "exact" when searched without FAISS
    hits: list[Hit] = field(default_factory=list)
    bridge: dict[str, str] | None = None  # the bridge the query went through: name, file, fingerprint
    engine: str = "numpy"  # what searched: "faiss-gpu", "torch-cuda", "faiss-cpu", or "numpy" (exact, no FAISS)
    backend: str = "cmcr"  # search backend: "cmcr" (C-MCR bridges) or "cavmae" (CAV-MAE's audio-visual space)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as text that always encodes (a non-UTF-8 file name shows its bytes as \\xNN)."""
        d = asdict(self)
        d["query"] = printable(self.query)
        for hit in d["hits"]:
            hit["path"] = printable(hit["path"])
        return d
