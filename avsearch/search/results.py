"""Typed search results, shared by the CLI and any later HTML gallery or HTTP API."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from avsearch.errors import InputError
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
    # P(belongs with the query) from the bridge's score calibration (balanced set); None when uncalibrated
    probability: float | None = None
    # a moment of a video or long recording: its range in seconds (None: the whole file; search/moments.py)
    start: float | None = None
    end: float | None = None
    more: int = 0  # further moments of this file in the index's answer, not listed (on its best moment)


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
    # the score calibration the probabilities come from: source, score_at_90, score_at_50 (None: uncalibrated)
    calibration: dict[str, Any] | None = None
    weaker: int = 0  # hits dropped by a minimum score (`--min-score`)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as text that always encodes (a non-UTF-8 file name shows its bytes as \\xNN)."""
        d = asdict(self)
        d["query"] = printable(self.query)
        for hit in d["hits"]:
            hit["path"] = printable(hit["path"])
        return d


AUTO = "auto"


def parse_min_score(value: str | None) -> float | str | None:
    """A minimum score as the user gives it: a number, "auto" (the calibration's 0.5 level), or None."""
    if value is None or value == "":
        return None
    if value.strip().lower() == AUTO:
        return AUTO
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or value.strip() != value:
        raise InputError(f"min score: expected a number or 'auto', got {value[:20]!r}")
    return number


def apply_min_score(results: list[ResultSet], min_score: float | str | None) -> bool:
    """Drop the hits scoring below `min_score` ("auto": below each list's calibrated 0.5 level; a list
    without a calibration keeps all its hits). Returns whether some list was uncalibrated under "auto"."""
    uncalibrated = False
    if min_score is None:
        return uncalibrated
    for r in results:
        if min_score == AUTO:
            level = (r.calibration or {}).get("score_at_50")
            if level is None:
                uncalibrated = uncalibrated or bool(r.hits)
                continue
        else:
            level = float(min_score)
        kept = [h for h in r.hits if h.score >= level]
        r.weaker += len(r.hits) - len(kept)
        r.hits = kept
    return uncalibrated
