"""File-level evaluation entry points used by the CLI (read arrays, optionally project, score)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avsearch.bridge.apply import read_embeddings
from avsearch.errors import InputError
from avsearch.evaluation.retrieval import chance_scores, retrieval_metrics


def evaluate_retrieval_files(
    queries: str | Path,
    gallery: str | Path,
    bridge: str | Path | None = None,
    query_space: str | None = None,
    gallery_space: str | None = None,
    query_modality: str | None = None,
    gallery_modality: str | None = None,
) -> dict[str, Any]:
    """Score instance-level retrieval between two paired arrays; with a bridge, project them first.

    Modalities default to each side's memory modality (audio and image for the audio-visual bridge).
    """
    q, g = read_embeddings(queries), read_embeddings(gallery)
    if bridge is not None:
        if not (query_space and gallery_space):
            raise InputError("--bridge needs --query-space and --gallery-space")
        from avsearch.bridge.io import open_bridge

        b = open_bridge(bridge)
        q = b.project(query_space, q, modality=query_modality or b.meta.side(query_space).memory)
        g = b.project(gallery_space, g, modality=gallery_modality or b.meta.side(gallery_space).memory)
    if q.shape != g.shape:
        raise InputError(f"{queries} has shape {q.shape} but {gallery} has {g.shape}; rows must pair up")
    scores = retrieval_metrics(q, g)
    return {
        "n": int(q.shape[0]),
        "q2g": scores["q2g"].to_dict(),
        "g2q": scores["g2q"].to_dict(),
        "chance": chance_scores(q.shape[0]).to_dict(),
    }
