"""Streamed IVF builds: an index over more vectors than fit in memory (issue 26, goal 2).

The vectors come in chunks from a `ChunkSource` (a LanceDB column read batch by batch, or an array) and
are read in a few passes, never all at once: one pass gathers the k-means training sample (the same rows
an in-memory build trains on) and computes the exact top-k of the tuning queries (a running top-k over
the chunks); one pass per kind adds each chunk's codes to the IVF lists. Candidates are re-ranked on the
full vectors, read by row either from the table's column itself (ann_table_vectors.TableVectors: the
pass records each row's fingerprint) or from a copy the first pass writes beside the index
(ann_disk.VectorFile).

What stays in memory: the codes (RaBitQ: 64 bytes + 8 for the id per 512-d vector), the training sample
(at most max_train_points rows), one chunk, and the tuning queries' top-k.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import (
    IVF_FLAT,
    IVF_RABITQ_GUIDED,
    IVF_RABITQ_REFINE,
    IVF_SQ8_REFINE,
    RECALL_K,
    REFINED,
    AnnParams,
)
from avsearch.store.ann_build import FALLBACKS, first_on_target, guided
from avsearch.store.ann_coarse import exact_lists
from avsearch.store.ann_disk import DiskRefine, VectorFile
from avsearch.store.ann_spill import SpillRefine, learn_route
from avsearch.store.ann_table_vectors import TableVectors, fingerprints
from avsearch.store.ann_train import empty_index, list_count, training_rows
from avsearch.store.ann_tune import tuned_index
from avsearch.store.config import AnnConfig

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

log = logging.getLogger(__name__)


class ChunkSource(Protocol):
    """n vectors of width dim, readable from the start any number of times, in chunks of rows."""

    n: int
    dim: int

    def chunks(self) -> Iterator[np.ndarray]:
        """(rows, dim) float32 chunks in row order, covering rows 0..n-1 once."""
        ...


@dataclass
class ArrayChunks:
    """A ChunkSource over an array (or a memory map): for tests and benchmarks."""

    array: np.ndarray
    rows: int = 65_536

    @property
    def n(self) -> int:
        return len(self.array)

    @property
    def dim(self) -> int:
        return self.array.shape[1]

    def chunks(self) -> Iterator[np.ndarray]:
        for s in range(0, self.n, self.rows):
            yield np.ascontiguousarray(self.array[s : s + self.rows], np.float32)


def stream_kind(cfg: AnnConfig) -> str:
    """The refined kind a streamed build starts with (IVF-Flat holds every vector in RAM: SQ8 stands in)."""
    return REFINED.get(cfg.refined_codes, IVF_SQ8_REFINE)


def build_streamed(
    source: ChunkSource,
    cfg: AnnConfig,
    vectors_to: str | Path | TableVectors,
    queries: np.ndarray | None = None,
    query_source: str = "",
    seed: int = 0,
    trained: tuple[DiskRefine, AnnParams] | None = None,
    guide: np.ndarray | None = None,
) -> tuple[DiskRefine, AnnParams]:
    """A tuned refined IVF index over source's vectors, re-ranking on the full vectors of vectors_to: a
    path, where they are written (ann_disk.VectorFile), or the table's column itself (TableVectors, over
    the same rows as source, in the same order; their fingerprints are recorded in this build's pass).

    The kinds are tried as build_index tries them (a kind under the recall target gives way to the next
    of its FALLBACKS chain that fits: IVF-Flat never does here). trained: the previous build of this
    column, whose trained lists are reused when the kind and size allow (as build_index does). guide: the
    other modality's vectors (none of `queries`); with enough of them (ann_build.guided) the first kind is
    the guided one, routing cross-modal queries by a shift learned from the exact neighbours of
    cfg.stream_guide_queries of them (found in the same pass as the tuning queries'); no spills here.
    """
    n, dim = source.n, source.dim
    vectors = vectors_to if isinstance(vectors_to, TableVectors) else VectorFile(vectors_to, dim)
    if isinstance(vectors, VectorFile) and vectors.rows:
        raise FileExistsError(f"{vectors_to}: a streamed build writes a new vectors file")
    first = stream_kind(cfg)
    steer = np.zeros((0, dim), np.float32)
    if first == IVF_RABITQ_REFINE and guided(cfg, guide) and cfg.stream_guide_queries:
        first, steer = IVF_RABITQ_GUIDED, np.ascontiguousarray(guide[: cfg.stream_guide_queries], np.float32)
    chain = tuple(k for k in (first, *FALLBACKS.get(first, ())) if k != IVF_FLAT)
    if trained is not None and trained[1].kind in chain and trained[1].extra.get("fell_back_from"):
        chain = chain[chain.index(trained[1].kind) :]  # an earlier build fell back: start where it ended
    reuse = trained is not None and trained[1].dim == dim and trained[1].n // 2 <= n <= trained[1].n * 2
    nlist = trained[1].nlist if reuse else list_count(n, cfg)
    take = training_rows(n, nlist, chain[0], cfg, seed)
    looked_up = steer if queries is None or not len(queries) else np.concatenate([queries, steer])
    sample, exact = _sample_and_exact(source, take, looked_up, cfg)

    def build(kind: str) -> tuple[DiskRefine, AnnParams]:
        if reuse and trained[1].kind == kind:
            index, old = trained[0], trained[1]
            index.reset()
            index.vectors = vectors
            params = AnnParams(kind=kind, n=n, dim=dim, nlist=old.nlist, coarse=old.coarse, vectors_on_disk=True)
            log.info("updating %s in place: %d vectors, %d lists", kind, n, old.nlist)
        else:
            codes = IVF_RABITQ_REFINE if kind == IVF_RABITQ_GUIDED else kind
            cpu, spec, _keep = empty_index(codes, dim, nlist, cfg, seed, on_disk=True)
            log.info("training %s (%s): %d vectors on %d training points", kind, spec, n, len(sample))
            cpu.train(sample)
            index = SpillRefine(cpu, vectors) if kind == IVF_RABITQ_GUIDED else DiskRefine(cpu, vectors)
            coarse = "hnsw" if "_HNSW" in spec else "flat"
            params = AnnParams(kind=kind, n=n, dim=dim, nlist=nlist, coarse=coarse, vectors_on_disk=True)
        _add_chunks(index, source, write=isinstance(vectors, VectorFile) and vectors.rows == 0)
        if kind == IVF_RABITQ_GUIDED:
            index.shift = learn_route(index, steer, exact(steer, min(RECALL_K, n)), cfg.spill_probe)
            used = int(index.shift is not None)
            params.extra["spills"] = {"route_shift": used, "copies": 0, "spilled_rows": 0, "guide_sample": len(steer)}
        return tuned_index(index, params, sample, cfg, queries, query_source, seed, exact)

    return first_on_target(chain, build, cfg)


def _add_chunks(index: DiskRefine, source: ChunkSource, write: bool) -> None:
    """Every chunk's codes into the lists (and, when `write`, its vectors onto the vectors file; when the
    vectors are the table's, their fingerprints)."""
    added = 0
    marks: list[np.ndarray] = []
    in_table = isinstance(index.vectors, TableVectors)
    with exact_lists(index.base):  # never filed through an HNSW coarse quantizer's graph (ann_coarse.py)
        for chunk in source.chunks():
            index.base.add(chunk)
            if write:
                index.vectors.append(chunk)
            if in_table:
                marks.append(fingerprints(chunk))
            added += len(chunk)
    if in_table:
        index.vectors.record_fingerprints(np.concatenate(marks) if marks else np.zeros(0, np.uint64))
    if added != source.n or index.vectors.rows != source.n:
        held = index.vectors.rows
        raise RuntimeError(f"the source gave {added} rows and the vectors file holds {held}, not {source.n}")


def _sample_and_exact(
    source: ChunkSource, take: np.ndarray | None, queries: np.ndarray | None, cfg: AnnConfig
) -> tuple[np.ndarray, Callable[[np.ndarray, int], np.ndarray]]:
    """One pass: the training sample (rows `take`; every row when None) and the exact top-k of every
    possible tuning query (the queries given, capped as tuning caps them later), as a lookup."""
    from avsearch.store.ann import RECALL_K

    q = None if queries is None or len(queries) == 0 else np.ascontiguousarray(queries, np.float32)
    k = min(RECALL_K, source.n)
    heap = None if q is None else faiss.ResultHeap(len(q), k, keep_max=True)
    parts: list[np.ndarray] = []
    start = 0
    for chunk in source.chunks():
        end = start + len(chunk)
        if take is None:
            parts.append(chunk.copy())
        else:
            lo, hi = np.searchsorted(take, [start, end])
            parts.append(chunk[take[lo:hi] - start].copy())
        if heap is not None:
            _chunk_topk(heap, q, chunk, k, start)
        start = end
    sample = np.concatenate(parts) if parts else np.zeros((0, source.dim), np.float32)
    if heap is None:
        # no queries: tuning makes synthetic ones from the sample; their truth is over the sample's rows only
        # when the sample is every row, else one more pass
        return sample, lambda qs, kk: _exact_pass(source, qs, kk)
    heap.finalize()
    truth = {row.tobytes(): ids for row, ids in zip(q, heap.I, strict=True)}

    def exact(qs: np.ndarray, kk: int) -> np.ndarray:
        if all(r.tobytes() in truth for r in qs):
            return np.stack([truth[r.tobytes()][:kk] for r in qs])
        return _exact_pass(source, qs, kk)

    return sample, exact


def _exact_pass(source: ChunkSource, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids of queries q over the source, one pass."""
    q = np.ascontiguousarray(q, np.float32)
    heap = faiss.ResultHeap(len(q), k, keep_max=True)
    start = 0
    for chunk in source.chunks():
        _chunk_topk(heap, q, chunk, k, start)
        start += len(chunk)
    heap.finalize()
    return heap.I


def _chunk_topk(heap: faiss.ResultHeap, q: np.ndarray, chunk: np.ndarray, k: int, start: int) -> None:
    """The chunk's top-k of every query into the running heap (FAISS's blocked search: no (M, rows) matrix)."""
    scores, ids = faiss.knn(q, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
    heap.add_result(scores, ids + start)
