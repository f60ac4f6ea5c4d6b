"""The query-guided IVF (issue 26, goal 1; kind `ivf_rabitq_guided`): cross-modal queries are routed to the
lists where their neighbours lie, and rows they often want get a copy there.

A cross-modal query sits in another cone than the data, so the lists nearest to it are not the lists
that hold its true neighbours: unguided, IVF needs a third of the lists for recall 0.95 at 1M
(benchmarks/search.py). The query distribution is known when the index is built (the other modality's
vectors, projected into the same space), as the Big-ANN OOD entries (RoarGraph, Pinecone's) exploit. For a
sample of such queries, their exact top-`k` are found; then
- the route shift: the mean offset from a sample query to its neighbours' mean direction (a modality gap
  is close to a constant offset); DiskRefine.search probes the lists nearest to unit(query + shift);
- spills: each neighbour still outside the `probe` (routed) lists nearest to its query gets a copy in that
  query's nearest list (at most `cap` copies per vector, those wanted by the most sample queries first).

The IVF lists then hold some ids twice; `SpillRefine` searches them, drops the repeats and re-ranks the
candidates exactly on the full vectors, so answers are exact scores of distinct rows. At 1M: 56x-207x
exact at recall@10 0.969-0.982 over four cross-modal cases (README "How fast, how exact").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import exact_topk
from avsearch.store.ann_disk import DiskRefine
from avsearch.store.config import AnnConfig, load_search_config

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)


def spill_plan(
    primary: np.ndarray, query_lists: np.ndarray, neighbours: np.ndarray, probe: int, cap: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, lists) of the extra copies: each sample query's neighbour (neighbours (M, k) row ids, -1 for
    none) whose primary list (primary (N,)) is not among the query's `probe` nearest lists (query_lists
    (M, >= probe), nearest first) is wanted in the query's nearest list; a row keeps the `cap` lists most
    sample queries want it in (ties: the lower list number)."""
    near = query_lists[:, :probe]
    rows = neighbours.reshape(-1)
    owner = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])
    keep = rows >= 0
    rows, owner = rows[keep], owner[keep]
    outside = ~(near[owner] == primary[rows][:, None]).any(axis=1)
    rows, target = rows[outside].astype(np.int64), near[owner[outside], 0].astype(np.int64)
    if not len(rows) or cap <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    width = int(target.max()) + 1
    pairs, votes = np.unique(rows * width + target, return_counts=True)
    p_rows, p_lists = pairs // width, pairs % width
    order = np.lexsort((p_lists, -votes, p_rows))  # by row, then most votes, then list
    p_rows, p_lists = p_rows[order], p_lists[order]
    rank = np.arange(len(p_rows)) - np.searchsorted(p_rows, p_rows)  # position within the row's pairs
    chosen = rank < cap
    return p_rows[chosen], p_lists[chosen]


def add_spilled(ivf: faiss.IndexIVF, vectors: np.ndarray, rows: np.ndarray, lists: np.ndarray) -> None:
    """Copies of vectors[rows] into the given lists of a trained IVF, under their row ids."""
    from faiss.contrib.ivf_tools import add_preassigned

    for s in range(0, len(rows), 65536):
        r = rows[s : s + 65536]
        add_preassigned(ivf, np.ascontiguousarray(vectors[r], np.float32), lists[s : s + 65536].astype(np.int64), r)


class SpillRefine(DiskRefine):
    """An IVF index whose lists may hold an id more than once, re-ranked exactly on the full vectors.

    search(x, k) as DiskRefine's: the IVF's k x k_factor best codes, repeats dropped, exact inner
    products against `vectors` (a VectorFile, or an (N, d) array in RAM), the k best kept."""

    @property
    def ntotal(self) -> int:
        return len(self.vectors)

    def _rerank(self, x: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of each row's distinct candidates (ids -1 where fewer than k)."""
        cand = np.sort(cand, axis=1)
        cand[:, 1:][cand[:, 1:] == cand[:, :-1]] = -1  # a spilled id found in two probed lists: once
        if isinstance(self.vectors, np.ndarray):
            # FAISS scores the candidates by id in place (as IndexRefineFlat does): no gathered copy. It
            # stops at a row's first id outside the vectors, so the missing and repeated go last.
            cand[cand < 0] = len(self.vectors)
            cand.sort(axis=1)
            scores = np.empty((len(x), k), np.float32)
            ids = np.empty((len(x), k), np.int64)
            cand = np.ascontiguousarray(cand)
            faiss.knn_inner_products_by_idx(
                faiss.swig_ptr(x),
                faiss.swig_ptr(self.vectors),
                faiss.swig_ptr(cand),
                self.d,
                len(x),
                len(self.vectors),
                cand.shape[1],
                k,
                faiss.swig_ptr(scores),
                faiss.swig_ptr(ids),
                cand.shape[1],
            )
            ids[ids < 0] = -1
            return np.where(ids >= 0, scores, -np.inf).astype(np.float32), ids
        return super()._rerank(x, cand, k)  # rows read from the vectors file


@dataclass(frozen=True)
class SpillSettings:
    """How a sample of queries spills base vectors (benchmarks/search.py measures them)."""

    k: int = 10  # each sample query's true top-k are the rows it wants in its lists
    probe: int = 4  # a neighbour in one of the query's `probe` nearest lists needs no copy
    cap: int = 2  # copies per row at most (memory: each copy is one more code in RAM)
    exact_pairs: float = 4e9  # sample x rows up to this: the sample's neighbours are exact; above, found
    # through the lists before spilling, nprobe = nlist / plan_probe_div (cheaper; most are found)
    plan_probe_div: int = 8
    route: bool = True  # learn a route shift for cross-modal queries (DiskRefine.search) when it helps


def sample_neighbours(index: SpillRefine, sample: np.ndarray, settings: SpillSettings) -> np.ndarray:
    """The sample queries' top-k rows: exact over the index's vectors when that is cheap enough, else
    through the index itself (before any spill) with a wide probe and deep re-ranking."""
    vectors = index.vectors
    if len(sample) * len(vectors) <= settings.exact_pairs:
        return exact_topk(np.asarray(vectors), sample, settings.k)
    ivf = faiss.extract_index_ivf(index.base)
    params = faiss.IndexRefineSearchParameters(
        k_factor=8.0, base_index_params=faiss.SearchParametersIVF(nprobe=max(1, ivf.nlist // settings.plan_probe_div))
    )
    return index.search(sample, settings.k, params=params)[1]


def route_shift(
    take: Callable[[np.ndarray], np.ndarray],
    sample: np.ndarray,
    neighbours: np.ndarray,
    wanted: np.ndarray,
    quantizer: faiss.Index,
    probe: int,
) -> np.ndarray | None:
    """The offset that moves a sample query towards its true neighbours (neighbours (M, k) row ids, -1
    for none, whose vectors take(rows) gives; their mean direction minus the query, averaged), kept when
    routing by unit(query + offset) puts more of the neighbours in the query's `probe` nearest lists than
    routing by the query itself (wanted (M, k): each neighbour's list); None otherwise (no gap to correct)."""
    found = neighbours >= 0
    if not found.any():
        return None
    total = np.zeros(sample.shape[1], np.float64)
    for s in range(0, len(sample), 4096):  # (chunk, k, d) neighbour vectors at a time, not the whole sample's
        nb, ok = neighbours[s : s + 4096], found[s : s + 4096]
        ahead = (take(np.maximum(nb, 0).reshape(-1)).reshape(*nb.shape, -1) * ok[..., None]).sum(axis=1)
        total += (_unit(ahead) - sample[s : s + 4096]).sum(axis=0)
    shift = (total / len(sample)).astype(np.float32)

    def covered(route: np.ndarray) -> int:
        lists = quantizer.search(np.ascontiguousarray(route, np.float32), probe)[1]
        return int(((wanted[..., None] == lists[:, None, :]).any(axis=2) & found).sum())

    return shift if covered(_unit(sample + shift)) > covered(sample) else None


def learn_route(index: DiskRefine, sample: np.ndarray, neighbours: np.ndarray, probe: int) -> np.ndarray | None:
    """route_shift for a built index whose full vectors are read by row (a streamed build): the sample's
    exact neighbours are looked up in the vectors file and filed in their lists anew (exactly)."""
    from avsearch.store.ann_coarse import exact_lists

    ivf = faiss.extract_index_ivf(index.base)
    rows = np.unique(neighbours[neighbours >= 0])
    if not len(rows):
        return None
    with exact_lists(index.base):
        lists = ivf.quantizer.search(np.ascontiguousarray(index.vectors.take(rows), np.float32), 1)[1][:, 0]
    at = np.minimum(np.searchsorted(rows, neighbours), len(rows) - 1)
    wanted = np.where(neighbours >= 0, lists[at], -1)
    return route_shift(index.vectors.take, sample, neighbours, wanted, ivf.quantizer, probe)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def build_spilled(
    vectors: np.ndarray,
    sample_queries: np.ndarray,
    nlist: int,
    cfg: AnnConfig | None = None,
    settings: SpillSettings = SpillSettings(),
    seed: int = 0,
    quantizer_from: SpillRefine | None = None,
) -> tuple[SpillRefine, dict[str, int]]:
    """An IVF of RaBitQ codes over vectors (N, d), unit rows, trained as the default kind is
    (ann_build.empty_index), routed and spilled from sample_queries (M, d) (the other modality's vectors in
    the same space, not the queries it is tuned or measured on), re-ranked exactly on the vectors.
    quantizer_from: an earlier such index whose trained lists and codes are reused (an update: the vectors
    are added again, the shift and spills recomputed; nlist is then that index's). Returns (index, stats:
    rows spilled, copies added, whether a route shift is used)."""
    from avsearch.store.ann import IVF_RABITQ_REFINE
    from avsearch.store.ann_coarse import exact_lists
    from avsearch.store.ann_train import empty_index, training_rows

    vectors = np.ascontiguousarray(vectors, np.float32)
    n, dim = vectors.shape
    cfg = cfg or load_search_config().ann
    if quantizer_from is not None:
        index = faiss.clone_index(quantizer_from.base)
        index.reset()  # the trained coarse lists and RaBitQ state stay, the codes go
    else:
        index, _, hold = empty_index(IVF_RABITQ_REFINE, dim, nlist, cfg, seed, on_disk=True)
        take = training_rows(n, nlist, IVF_RABITQ_REFINE, cfg, seed)
        index.train(vectors if take is None else vectors[take])
        del hold
    ivf = faiss.extract_index_ivf(index)
    with exact_lists(index):  # an HNSW coarse quantizer's graph would misfile some (store/ann_coarse.py)
        primary = ivf.quantizer.search(vectors, 1)[1][:, 0]
    add_spilled(ivf, vectors, np.arange(n, dtype=np.int64), primary)
    spilled = SpillRefine(index, vectors)
    stats = {"spilled_rows": 0, "copies": 0, "route_shift": 0}
    if not len(sample_queries):
        return spilled, stats
    sample = np.ascontiguousarray(sample_queries, np.float32)
    neighbours = sample_neighbours(spilled, sample, settings)
    if settings.route:
        wanted = primary[np.maximum(neighbours, 0)]
        spilled.shift = route_shift(lambda r: vectors[r], sample, neighbours, wanted, ivf.quantizer, settings.probe)
    routed = sample if spilled.shift is None else _unit(sample + spilled.shift)
    stats["route_shift"] = int(spilled.shift is not None)
    if settings.cap <= 0:
        return spilled, stats
    query_lists = ivf.quantizer.search(routed, settings.probe)[1]
    rows, lists = spill_plan(primary, query_lists, neighbours, settings.probe, settings.cap)
    add_spilled(ivf, vectors, rows, lists)
    stats.update(spilled_rows=int(len(np.unique(rows))), copies=int(len(rows)))
    return spilled, stats
