"""Instance-level retrieval metrics (paper tables 1 and 5): query i matches gallery item i only.

With one relevant item, average precision is 1 / rank, so mAP is the mean reciprocal rank; R@k is the
share of queries whose match ranks in the top k. Figures are in percent, as in the paper. Chance for N
items: mAP = H_N / N (0.22 for N = 4,095), R@k = k / N.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsearch.errors import InputError

BLOCK = 4096  # query rows scored per block, so N x N similarities never sit in memory at once


@dataclass(frozen=True)
class RetrievalScores:
    mAP: float  # percent
    R1: float
    R5: float
    R10: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def match_ranks(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1-based rank of gallery[i] among all gallery items for query i, by cosine similarity.

    Ties count against the query (an item scoring equal to the match ranks ahead of it), so a
    degenerate model that scores everything the same gets the worst rank, not the best.
    """
    if queries.ndim != 2 or gallery.ndim != 2:
        raise InputError(f"queries and gallery must be 2-D, got {queries.shape} and {gallery.shape}")
    if queries.shape != gallery.shape:
        raise InputError(
            f"instance-level retrieval needs paired rows: queries {queries.shape} vs gallery {gallery.shape}"
        )
    q = torch.nn.functional.normalize(torch.tensor(np.asarray(queries, np.float32)), dim=1)
    g = torch.nn.functional.normalize(torch.tensor(np.asarray(gallery, np.float32)), dim=1)
    ranks = np.empty(q.shape[0], np.int64)
    for start in range(0, q.shape[0], BLOCK):
        sims = q[start : start + BLOCK] @ g.T
        rows = torch.arange(sims.shape[0])
        own = sims[rows, rows + start].unsqueeze(1)
        others_ge = (sims >= own).sum(dim=1) - 1  # exclude the match itself
        ranks[start : start + sims.shape[0]] = (others_ge + 1).numpy()
    return ranks


def scores_from_ranks(ranks: np.ndarray) -> RetrievalScores:
    return RetrievalScores(
        mAP=float(np.mean(1.0 / ranks) * 100),
        R1=float(np.mean(ranks <= 1) * 100),
        R5=float(np.mean(ranks <= 5) * 100),
        R10=float(np.mean(ranks <= 10) * 100),
        n=int(ranks.shape[0]),
    )


def retrieval_metrics(queries: np.ndarray, gallery: np.ndarray) -> dict[str, RetrievalScores]:
    """Both directions: "q2g" ranks the gallery for each query, "g2q" the queries for each gallery item.

    For audio queries and an image gallery these are the paper's A2I and I2A.
    """
    return {
        "q2g": scores_from_ranks(match_ranks(queries, gallery)),
        "g2q": scores_from_ranks(match_ranks(gallery, queries)),
    }


def chance_scores(n: int) -> RetrievalScores:
    """Expected scores of a random ranking of n items (the paper's 'Random' row)."""
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    return RetrievalScores(mAP=harmonic / n * 100, R1=100 / n, R5=min(5, n) / n * 100, R10=min(10, n) / n * 100, n=n)


# -- audio-image pairs through a search backend -----------------------------------------------------------


def read_pairs(path: str | Path) -> list[tuple[Path, Path]]:
    """A pairs list: CSV with an `audio,image` header, one pair a line, paths relative to the list's folder
    (e.g. a VGGSound/AudioSet "5 per class" list with each clip's middle frame as the picture)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the pairs list ({exc})") from exc
    if not rows or not {"audio", "image"} <= set(rows[0]):
        raise InputError(f"{path}: a pairs list is CSV with an `audio,image` header and at least one pair")
    return [(path.parent / r["audio"], path.parent / r["image"]) for r in rows]


def pair_vectors(
    pairs: Sequence[tuple[Path, Path]],
    backend: str,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    bridge: str | Path | None = None,
    loader: Callable[[str, tuple[str, ...]], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Audio (N, D) and image (N, D) vectors of the pairs in one space of `backend`, as search meets them:
    "cavmae": CAV-MAE's own audio-visual space (configs/backends.toml's weights); "cmcr": CLAP audio and
    CLIP images projected by the audio-visual bridge (`bridge`, default the released clap_clip.pt)."""
    from avsearch.embedding.models import default_loader, load_backend_config, plan_modalities
    from avsearch.modalities import AUDIO, CAVMAE, CMCR, IMAGE

    loader = loader or default_loader(Path(weights_dir) if weights_dir else None, device)
    audio, image = [a for a, _ in pairs], [i for _, i in pairs]
    if backend == CAVMAE:
        encoder = loader(load_backend_config().cavmae_encoder, (AUDIO, IMAGE))
        return _batched(encoder, AUDIO, audio), _batched(encoder, IMAGE, image)
    if backend != CMCR:
        raise InputError(f"unknown backend {backend!r}; valid: {CMCR}, {CAVMAE}")
    from avsearch.bridge.fast import read_bridge_meta
    from avsearch.bridge.io import open_bridge
    from avsearch.encoders.weights import resolve_weight

    file = Path(bridge) if bridge is not None else resolve_weight("clap_clip.pt", weights_dir)
    meta, _ = read_bridge_meta(file)
    entries = plan_modalities([meta])
    if AUDIO not in entries or IMAGE not in entries:
        raise InputError(f"{file}: not an audio-image bridge (it connects {', '.join(meta.spaces)})")
    b = open_bridge(file, device)
    out = []
    for modality, paths in ((AUDIO, audio), (IMAGE, image)):
        native = _batched(loader(entries[modality].encoder, (modality,)), modality, paths)
        out.append(b.project(entries[modality].space, native, modality=modality))
    return out[0], out[1]


def _batched(encoder: Any, modality: str, paths: Sequence[Path], batch: int = 32) -> np.ndarray:
    """encode_files in batches, so a long list never holds every decoded file at once."""
    parts = [encoder.encode_files(modality, list(paths[i : i + batch])) for i in range(0, len(paths), batch)]
    return np.concatenate(parts).astype(np.float32)
