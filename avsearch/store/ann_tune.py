"""Recall tuning of a built IVF index: the cheapest nprobe (and k_factor) reaching the target on cross-modal
queries, and settings of their own for same-modality queries.

IVF indexes are tuned on *cross-modal* query vectors (audio projections against image vectors, text
against audio, ...). Those queries sit outside the clusters of the indexed modality (the modality gap),
so they need more probed lists than queries that look like the data. `nprobe` (and, for refined kinds,
`k_factor`) is the cheapest setting whose recall@10 against exact search reaches target + margin on
half of the queries; the other half is held out and its recall is recorded beside the index.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import IVF_FLAT, RECALL_K, RERANKED, AnnParams, exact_topk, recall_at_k
from avsearch.store.ann_disk import DiskRefine
from avsearch.store.ann_search import configure, search_parameters
from avsearch.store.config import AnnConfig

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

log = logging.getLogger(__name__)


def tuned_index(
    index: faiss.Index,
    params: AnnParams,
    vectors: np.ndarray,
    cfg: AnnConfig,
    queries: np.ndarray | None,
    query_source: str,
    seed: int,
    exact: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> tuple[faiss.Index, AnnParams]:
    """Tune a built index (its nprobe, k_factor and recalls set in params). exact(queries, k): the exact
    top-k ids over every indexed vector, for an index whose vectors are not all in `vectors` (a streamed
    build passes its training sample there, for synthetic queries)."""
    rng = np.random.default_rng(seed + 1)
    if queries is None or len(queries) == 0:
        queries, query_source = _synthetic_gap_queries(vectors, cfg.max_tuning_queries, rng), "synthetic-gap"
        log.warning("no cross-modal queries to tune %s on: using data vectors with the mean removed", params.kind)
    queries = np.ascontiguousarray(queries, np.float32)
    if len(queries) > cfg.max_tuning_queries:
        queries = queries[rng.choice(len(queries), cfg.max_tuning_queries, replace=False)]
    setting, tuned, heldout = tune(index, params, vectors, queries, cfg, rng, exact)
    params.nprobe, params.k_factor = setting
    params.tuned_recall, params.heldout_recall = tuned, heldout
    params.tuning_queries, params.tuning_source = len(queries), query_source
    params.extra["same_modality"] = tune_same_modality(index, params, vectors, cfg, seed, exact)
    configure(index, params)
    return index, params


def _synthetic_gap_queries(vectors: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Stand-ins for cross-modal queries: data vectors with the common (mean) direction removed.

    The modality gap is mostly a shift along that direction, so these fall outside the data's cone.
    """
    sample = vectors[rng.choice(len(vectors), min(m, len(vectors)), replace=False)]
    q = sample - vectors[: min(len(vectors), 100_000)].mean(axis=0, keepdims=True)
    return (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def tune(
    index: faiss.Index,
    params: AnnParams,
    vectors: np.ndarray,
    queries: np.ndarray,
    cfg: AnnConfig,
    rng: np.random.Generator,
    exact: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> tuple[tuple[int, int], float, float]:
    """The cheapest (nprobe, k_factor) reaching target + margin on the tuning half of the queries:
    ((nprobe, k_factor), tuned recall, held-out recall). k_factor is 0 for kinds without re-ranking.

    For each k_factor the smallest passing nprobe is found (recall grows with nprobe); among those
    settings the one whose search of the tuning queries takes least time wins.
    """
    order = rng.permutation(len(queries))
    half = len(order) // 2
    shuffled = queries[order]
    tune_q, held_q = (shuffled[:half], shuffled[half:]) if half >= 10 else (shuffled, shuffled)
    k = min(RECALL_K, params.n)
    # one exact search of both halves (a streamed build pays a pass over the table per call)
    truth = exact_topk(vectors, shuffled, k) if exact is None else exact(shuffled, k)
    truth_tune, truth_held = (truth[:half], truth[half:]) if half >= 10 else (truth, truth)
    goal = min(1.0, cfg.target_recall + cfg.tuning_margin)
    refined = params.kind in RERANKED

    last = [0.0]  # seconds of the latest search of the tuning queries

    def recall(nprobe: int, k_factor: int, q: np.ndarray, truth: np.ndarray) -> float:
        p = search_parameters(params, nprobe=nprobe, k_factor=k_factor)
        start = time.perf_counter()
        ids = index.search(q, k, params=p)[1]
        last[0] = time.perf_counter() - start
        return recall_at_k(ids, truth)

    found: list[tuple[float, int, int, float]] = []  # (seconds, nprobe, k_factor, recall)
    fastest = math.inf  # the search time of the fastest passing setting found so far
    floor = 1
    # Deepest re-ranking first: it passes with the fewest lists, and a shallower one needs at least as many
    # (fewer candidates per list probed), so its search starts there; and once a shallower one's search,
    # still short of the goal, is already slower than a passing setting, more lists cannot make it win: it
    # stops (at 10M rows that spares probing thousands of lists for a depth that cannot pass cheaply).
    for k_factor in sorted(cfg.k_factors, reverse=True) if refined else (0,):
        nprobe, got = _smallest_nprobe(
            lambda p, kf=k_factor: recall(p, kf, tune_q, truth_tune),
            params.nlist,
            goal,
            capped=params.kind != IVF_FLAT,
            start=floor,
            too_slow=lambda best=fastest: last[0] > best,
        )
        if got < goal:
            found.append((math.inf, nprobe, k_factor, got))  # the codes cap recall here, or it cannot win
            continue
        floor = nprobe
        p = search_parameters(params, nprobe=nprobe, k_factor=k_factor)
        start = time.perf_counter()
        index.search(tune_q, k, params=p)
        took = time.perf_counter() - start
        fastest = min(fastest, took)
        found.append((took, nprobe, k_factor, got))
    passing = [f for f in found if f[0] < math.inf]
    _, nprobe, k_factor, tuned = min(passing) if passing else max(found, key=lambda f: f[3])
    heldout = recall(nprobe, k_factor, held_q, truth_held)
    log.info(
        "%s: nprobe %d/%d%s: recall@10 %.3f (tuning), %.3f (held out)",
        params.kind,
        nprobe,
        params.nlist,
        f", k_factor {k_factor}" if k_factor else "",
        tuned,
        heldout,
    )
    return (nprobe, k_factor), tuned, heldout


def _smallest_nprobe(
    recall: Callable[[int], float],
    nlist: int,
    goal: float,
    capped: bool,
    start: int = 1,
    too_slow: Callable[[], bool] = lambda: False,
) -> tuple[int, float]:
    """Smallest nprobe in [start, nlist] with recall(nprobe) >= goal: (nprobe, its recall); start - 1 is
    known to fall short. When none reaches the goal: (the nprobe where recall stopped growing, or where
    too_slow() said the last call's search already took longer than a setting found before, its recall).
    capped: compressed codes bound recall, so a doubling that gains almost nothing ends the search
    (IVF-Flat reaches 1.0)."""
    # Doubling finds a passing nprobe; bisection then finds the smallest one.
    lo, hi = start - 1, min(max(1, start), nlist)
    got = recall(hi)
    while got < goal and hi < nlist:
        if too_slow():
            return hi, got  # the passing nprobe lies above hi: slower still
        previous = got
        lo, hi = hi, min(nlist, hi * 2)
        got = recall(hi)
        if capped and got < goal and hi >= 64 and got - previous < 0.002:
            return hi, got  # a plateau: the codes, not the probes, limit recall
    if got < goal:
        return hi, got
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = recall(mid)
        if r >= goal:
            hi, got = mid, r
        else:
            lo = mid
    return hi, got


class _OwnModality:
    """An index searched as for queries of the indexed modality itself: no route shift (DiskRefine kinds)."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    def search(
        self, x: np.ndarray, k: int, params: faiss.SearchParameters | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(x, k, params=params, cross_modal=False)


def tune_same_modality(
    index: faiss.Index,
    params: AnnParams,
    vectors: np.ndarray,
    cfg: AnnConfig,
    seed: int,
    exact: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> dict[str, float]:
    """Settings of their own for same-modality queries (a picture against pictures: no modality gap, so
    usually fewer lists, and no route shift): tuned as the cross-modal ones are, on a random sample of the
    indexed vectors as queries (each finds itself, as a query by an indexed item does). Returns nprobe,
    k_factor and the tuned and held-out recall@10."""
    rng = np.random.default_rng(seed + 2)
    rows = np.sort(rng.choice(len(vectors), min(len(vectors), cfg.max_tuning_queries), replace=False))
    queries = np.ascontiguousarray(vectors[rows], np.float32)
    view = _OwnModality(index) if isinstance(index, DiskRefine) else index
    (nprobe, k_factor), tuned, heldout = tune(view, params, vectors, queries, cfg, rng, exact)
    return {"nprobe": nprobe, "k_factor": k_factor, "tuned_recall": tuned, "heldout_recall": heldout}
