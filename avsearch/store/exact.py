"""Flat (exact) FAISS builds searched in numpy on the CPU, without importing FAISS.

Up to `exact_max_vectors` rows a FAISS build is IndexFlatIP: every row's vector as it was at the build's
table version, scored by inner product. Where no GPU can take it (no NVIDIA driver, or --device cpu), the
same search is a matrix product and a top-k in numpy over those vectors, read from the table as of the
build's version: the same rows, the same scores (float32 dot products) and so the same hits, while a cold
query skips `import faiss` (0.2 s, 170 MB with the CUDA libraries of its GPU build, and 80 MB more when
the process exits). It is a LoadedAnn like any other: rows added or deleted since the build are handled
beside it (search/delta.py), filters select its rows by position. Indexing keeps using FAISS's own
object (ann_files.load_ann), since it adds to and rebuilds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from avsearch.errors import DamagedIndexError
from avsearch.store.ann import FLAT, AnnParams
from avsearch.store.ann_files import LoadedAnn
from avsearch.store.tables import MediaStore

log = logging.getLogger(__name__)

ENGINE = "numpy"  # what results say answered (SearchResult.engine)


class FlatVectors:
    """IndexFlatIP's search over an (N, d) float32 matrix: scores and row ids, best first, ties by row."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.ntotal = len(self.vectors)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries (M, d) -> (scores (M, k), ids (M, k)); ids -1 (and scores -inf) where fewer than k rows."""
        rows = np.arange(self.ntotal) if allowed is None else np.unique(np.asarray(allowed, np.int64))
        rows = rows[(rows >= 0) & (rows < self.ntotal)]
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if not len(rows):
            return scores, ids
        all_scores = queries @ (self.vectors if allowed is None else self.vectors[rows]).T  # (M, n)
        n = min(k, len(rows))
        for i, row in enumerate(all_scores):
            # the rows scoring at least the n-th best (ties at that score all kept), then by score and row
            best = np.flatnonzero(row >= np.partition(row, len(row) - n)[len(row) - n])
            best = best[np.lexsort((best, -row[best]))][:n]
            scores[i, :n], ids[i, :n] = row[best], rows[best]
        return scores, ids


@dataclass
class ExactAnn(LoadedAnn):
    """A flat FAISS build answered by FlatVectors (`index`); paths are the rows' names in the same order."""

    @property
    def engine(self) -> str:
        return ENGINE

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, cross_modal: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, np.float32)  # exact: the query's modality changes nothing
        return self.index.search(queries, max(1, min(k, len(self.paths))), allowed)


def load_exact(store: MediaStore, name: str, modality: str, column: str, meta: dict[str, Any]) -> ExactAnn | None:
    """The flat build described by `meta` (ann/<name>.json) as an ExactAnn; None for another kind, or when
    the table no longer holds the build's version (the caller then loads the FAISS file)."""
    params = AnnParams(**meta["params"])
    if params.kind != FLAT:
        return None
    version = int(meta["table_version"])
    try:
        paths, vectors = store.vectors_at(modality, column, version)
    except DamagedIndexError as exc:  # e.g. the version was cleaned up after a run killed before its refresh
        log.info("%s: table version %d not readable (%s); loading the FAISS file", name, version, exc)
        return None
    return ExactAnn(name, FlatVectors(vectors), params, paths, version)
