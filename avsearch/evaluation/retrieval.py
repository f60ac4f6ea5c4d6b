"""Instance-level retrieval metrics (paper tables 1 and 5): query i matches gallery item i only.

With one relevant item, average precision is 1 / rank, so mAP is the mean reciprocal rank; R@k is the
share of queries whose match ranks in the top k. Figures are in percent, as in the paper. Chance for N
items: mAP = H_N / N (0.22 for N = 4,095), R@k = k / N.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
