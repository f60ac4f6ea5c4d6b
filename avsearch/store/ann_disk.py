"""IVF codes in RAM, exact re-ranking on full vectors read from a file on disk (issue 26, goal 2).

IndexRefineFlat keeps every full-precision vector in memory (10M x 512 float32 = 20 GB). `DiskRefine`
keeps only the IVF lists of compact codes in memory and re-ranks the best k x k_factor candidates on
vectors read from a memory-mapped float32 file kept beside the index: a query touches k x k_factor rows
of it (160 rows = 320 kB at k 10, k_factor 16), which the page cache serves.

It answers `search(x, k, params)` as a FAISS index does, with the same parameters (an
IndexRefineSearchParameters carries k_factor and the IVF's own nprobe and row selector), so the code that
searches and tunes refined indexes searches it unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avsearch.lazy_import import lazy_module

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)


def distinct_rows(rows: np.ndarray, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows asked for, sorted; the index of each asked row among them): a store of `n`
    rows reads each row once; IndexError when one lies outside 0..n-1."""
    unique, back = np.unique(np.asarray(rows, np.int64), return_inverse=True)
    if len(unique) and (unique[0] < 0 or unique[-1] >= n):
        raise IndexError(f"{what}: rows {unique[0]}..{unique[-1]} outside 0..{n - 1}")
    return unique, back


def in_asked_order(read: np.ndarray, back: np.ndarray) -> np.ndarray:
    """The rows read for distinct_rows' sorted rows, in the order (and with the repeats) asked."""
    return read if len(back) == len(read) and (back == np.arange(len(back))).all() else read[back]


class VectorFile:
    """Row-major float32 vectors (N, dim) in a raw file: appended in chunks, read by row through a memory map."""

    def __init__(self, path: str | Path, dim: int) -> None:
        self.path, self.dim = Path(path), dim
        self._map: np.ndarray | None = None
        self._fd: int | None = None

    @property
    def rows(self) -> int:
        return self.path.stat().st_size // (4 * self.dim) if self.path.exists() else 0

    def __len__(self) -> int:
        return self.rows

    def append(self, chunk: np.ndarray) -> None:
        with open(self.path, "ab") as f:
            f.write(np.ascontiguousarray(chunk, np.float32).tobytes())
        self._map = None  # the file grew: map it again on the next read

    def matrix(self) -> np.ndarray:
        """The vectors, memory-mapped read-only (no copy in RAM; pages are read when rows are touched)."""
        if self._map is None or len(self._map) != self.rows:
            n = self.rows
            self._map = np.memmap(self.path, np.float32, "r", shape=(n, self.dim)) if n else np.zeros((0, self.dim))
        return self._map

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of the given rows (any order, repeats allowed), read with pread into a fresh array.

        Not through the memory map: pages a process touched through a map count in its resident memory
        (a query process would grow towards the file's size), pages read with pread stay in the page cache,
        shared and reclaimable (measured in benchmarks/search.py --scale)."""
        unique, back = distinct_rows(rows, self.rows, str(self.path))
        out = np.empty((len(unique), self.dim), np.float32)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        width = 4 * self.dim
        buffer = memoryview(out).cast("B")
        starts = np.flatnonzero(np.diff(unique, prepend=-2) != 1)  # runs of consecutive rows: one read each
        ends = np.append(starts[1:], len(unique))
        for a, b, row in zip(starts.tolist(), ends.tolist(), unique[starts].tolist(), strict=True):
            if os.preadv(self._fd, [buffer[a * width : b * width]], row * width) != (b - a) * width:
                raise OSError(f"{self.path}: short read at row {row}")
        return in_asked_order(out, back)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


RERANK_BATCH = 64  # queries re-ranked together (their candidates' vectors: 64 x 160 x 2 kB = 21 MB at most)


def rerank_exact(
    x: np.ndarray, cand: np.ndarray, k: int, take: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query's candidate ids (ids -1 where missing; -1 where fewer than k): each
    candidate's vector read once through `take(sorted distinct rows)` (a file read in file order, or
    rows of an array)."""
    valid = cand >= 0
    rows = np.unique(cand[valid])
    scores = np.full(cand.shape, -np.inf, np.float32)
    if len(rows):
        block = take(rows)
        at = np.searchsorted(rows, np.where(valid, cand, rows[0]))
        scores = np.where(valid, np.einsum("qd,qcd->qc", x, block[at]), -np.inf).astype(np.float32)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, top, 1)
    found = np.take_along_axis(cand, top, 1)
    found[~np.isfinite(best)] = -1
    out_s = np.full((len(x), k), -np.inf, np.float32)
    out_i = np.full((len(x), k), -1, np.int64)
    out_s[:, : top.shape[1]], out_i[:, : top.shape[1]] = best, found
    return out_s, out_i


class DiskRefine:
    """An IVF index of compact codes whose candidates are re-ranked exactly on a VectorFile."""

    def __init__(
        self, base: faiss.Index, vectors: VectorFile, k_factor: float = 1.0, shift: np.ndarray | None = None
    ) -> None:
        self.base, self.vectors, self.k_factor = base, vectors, float(k_factor)
        self.d = base.d
        # Cross-modal queries are routed: the lists probed are those nearest to unit(x + shift), where the
        # query's true neighbours lie (a modality gap is close to a constant offset); None: nearest to x.
        self.shift = shift
        self._centroids: np.ndarray | None = None

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal)

    def search(
        self, x: np.ndarray, k: int, params: faiss.SearchParameters | None = None, cross_modal: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores (M, k), ids (M, k)) by exact inner product over the IVF's k x k_factor best candidates;
        ids -1 where fewer than k came back (a selector, too few probed rows). cross_modal: route by the
        shift (when the index has one); False for queries of the indexed modality itself."""
        x = np.ascontiguousarray(x, np.float32)
        k_factor, base_params = self.k_factor, params
        if isinstance(params, faiss.IndexRefineSearchParameters):
            # FAISS hands the field back as a plain SearchParameters proxy (no nprobe); its Python wrapper
            # keeps the object it was given, which the routed search needs
            refs = getattr(params, "_sp_field_refs", {})
            k_factor, base_params = params.k_factor, refs.get("base_index_params", params.base_index_params)
        depth = max(k, int(k * k_factor))
        if cross_modal and self.shift is not None:
            cand = self._routed(x, depth, base_params)
        else:
            cand = self.base.search(x, depth, params=base_params)[1]
        scores = np.full((len(x), k), -np.inf, np.float32)
        ids = np.full((len(x), k), -1, np.int64)
        for s in range(0, len(x), RERANK_BATCH):
            scores[s : s + RERANK_BATCH], ids[s : s + RERANK_BATCH] = self._rerank(
                x[s : s + RERANK_BATCH], cand[s : s + RERANK_BATCH], k
            )
        return scores, ids

    def _routed(self, x: np.ndarray, depth: int, params: faiss.SearchParameters | None) -> np.ndarray:
        """The IVF's `depth` best candidate ids of x from the lists nearest to unit(x + shift); the codes
        are still scored against x itself."""
        ivf = faiss.extract_index_ivf(self.base)
        nprobe = min(ivf.nlist, getattr(params, "nprobe", 0) or ivf.nprobe)
        if self._centroids is None:
            self._centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        route = x + self.shift
        route /= np.maximum(np.linalg.norm(route, axis=1, keepdims=True), 1e-12)
        # an HNSW coarse quantizer searches as wide as the IVF's own search would (ann_search.coarse_ef)
        coarse_params = getattr(params, "quantizer_params", None)
        lists = np.ascontiguousarray(ivf.quantizer.search(route, nprobe, params=coarse_params)[1])
        # the query-to-centroid terms of the lists probed, as the quantizer would give them for x
        coarse = np.ascontiguousarray(np.einsum("qd,qpd->qp", x, self._centroids[np.maximum(lists, 0)]), np.float32)
        scores = np.empty((len(x), depth), np.float32)
        ids = np.empty((len(x), depth), np.int64)
        if params is None:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        # the Python wrapper of search_preassigned refuses search parameters (a row selector): the C++ call
        ivf.search_preassigned_c(
            len(x),
            faiss.swig_ptr(x),
            depth,
            faiss.swig_ptr(lists),
            faiss.swig_ptr(coarse),
            faiss.swig_ptr(scores),
            faiss.swig_ptr(ids),
            False,
            params,
        )
        return ids

    def _rerank(self, x: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return rerank_exact(x, cand, k, self.vectors.take)

    def add(self, vectors: np.ndarray) -> None:
        """Codes into the lists and the full vectors onto the end of the file (ids continue from ntotal)."""
        self.base.add(np.ascontiguousarray(vectors, np.float32))
        self.vectors.append(vectors)

    def reset(self) -> None:
        """Empty lists (the trained quantizer and codebooks stay); the file is the caller's to replace."""
        self.base.reset()
