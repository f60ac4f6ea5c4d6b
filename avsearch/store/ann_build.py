"""Building a FAISS index: train, add, tune, and fall back to a kind that reaches the recall target."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import (
    CODES,
    FLAT,
    IVF_FLAT,
    IVF_PQ,
    IVF_RABITQ_REFINE,
    IVF_SQ8_REFINE,
    AnnParams,
    choose_kind,
    maybe_gpu,
)
from avsearch.store.ann_tune import tuned_index
from avsearch.store.config import AnnConfig

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

log = logging.getLogger(__name__)


def list_count(n: int, cfg: AnnConfig) -> int:
    # FAISS's guidance is 4-16 sqrt(n) lists. Finer lists need far fewer probes for cross-modal
    # queries (measured: 200k vectors, recall@10 0.97 at 16 of 1788 lists vs 165 of 447), never
    # with fewer points per list than k-means needs.
    return max(1, min(int(cfg.lists_per_sqrt_n * math.sqrt(n)), n // cfg.min_points_per_list))


def factory_string(kind: str, dim: int, nlist: int, cfg: AnnConfig, on_disk: bool = False) -> str:
    """The FAISS index_factory description of an IVF kind with nlist lists (e.g. "IVF16384_HNSW32,RaBitQ,RFlat").
    on_disk: a refined kind whose full vectors stay in a file (ann_disk.DiskRefine): the codes only."""
    coarse = f"IVF{nlist}" + ("_HNSW32" if nlist >= cfg.hnsw_coarse_min_lists else "")
    if kind == IVF_PQ:
        # one byte per 8 dimensions (64 bytes for 512-d): 16x smaller than float32
        return f"{coarse},PQ{max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)}"
    codes = CODES[kind]
    return f"{coarse},{codes.removesuffix(',RFlat') if on_disk else codes}"


# When a kind's compressed codes cap recall below the target, the next kind of its chain is built: more
# precise codes first (SQ8: a byte per dimension), then the full vectors in the lists (IVF-Flat), which
# reach any recall given enough probes. Kinds whose full vectors do not fit memory have no fallback.
FALLBACKS = {IVF_RABITQ_REFINE: (IVF_SQ8_REFINE, IVF_FLAT), IVF_SQ8_REFINE: (IVF_FLAT,)}


def build_index(
    vectors: np.ndarray,
    cfg: AnnConfig,
    queries: np.ndarray | None = None,
    query_source: str = "",
    seed: int = 0,
    trained: tuple[faiss.Index, AnnParams] | None = None,
) -> tuple[faiss.Index, AnnParams]:
    """Build (and for IVF kinds, tune) an index over vectors (N, d) float32, L2-normalised rows.

    queries (M, d): cross-modal query vectors in the same space, used only for tuning IVF indexes.
    trained: the previous (CPU index, params) of this table; its trained lists are reused (an update,
    not a rebuild) while the kind is unchanged and the size is within a factor 2 of the trained size.
    A kind whose held-out recall stays below the target is replaced by the next kind of its FALLBACKS
    chain that reaches it (the best one is kept, with a warning, when none does), so no index ships under
    its target while another kind would meet it; params.extra["fell_back_from"] lists the kinds passed.
    Returns the index (on GPU when FAISS has GPUs) and its parameters.
    """
    vectors = np.ascontiguousarray(vectors, np.float32)
    first = choose_kind(len(vectors), vectors.shape[1], cfg)
    chain = (first, *FALLBACKS.get(first, ()))
    if trained is not None and trained[1].kind in chain:  # an earlier build fell back: start where it ended
        chain = chain[chain.index(trained[1].kind) :]
    return first_on_target(
        chain, lambda kind: _build_kind(kind, vectors, cfg, queries, query_source, seed, trained), cfg
    )


def first_on_target(
    chain: Sequence[str], build: Callable[[str], tuple[Any, AnnParams]], cfg: AnnConfig
) -> tuple[Any, AnnParams]:
    """Build the kinds of `chain` in order until one reaches the recall target (in memory or streamed:
    `build(kind)` -> (index, params)); the best one when none does, with a warning. params.extra
    ["fell_back_from"] lists the kinds passed over."""
    best: tuple[Any, AnnParams] | None = None
    passed: list[str] = []
    for kind in chain:
        index, params = build(kind)
        if best is None or params.heldout_recall > best[1].heldout_recall:
            best = (index, params)
        if params.heldout_recall >= cfg.target_recall:
            break
        passed.append(kind)
        if kind != chain[-1]:
            log.warning(
                "%s plateaus at recall@10 %.3f on held-out cross-modal queries (target %.2f): building %s",
                kind,
                params.heldout_recall,
                cfg.target_recall,
                chain[chain.index(kind) + 1],
            )
    assert best is not None
    index, params = best
    if passed and params.kind != chain[0]:
        params.extra["fell_back_from"] = [k for k in passed if k != params.kind]
    if params.heldout_recall < cfg.target_recall:
        log.warning(
            "%s over %d vectors reaches recall@10 %.3f on held-out cross-modal queries, below the target %.2f",
            params.kind,
            params.n,
            params.heldout_recall,
            cfg.target_recall,
        )
    return index, params


def _build_kind(
    kind: str,
    vectors: np.ndarray,
    cfg: AnnConfig,
    queries: np.ndarray | None,
    query_source: str,
    seed: int,
    trained: tuple[faiss.Index, AnnParams] | None,
) -> tuple[faiss.Index, AnnParams]:
    """Build and tune one index of `kind` (build_index's steps for one kind)."""
    n, dim = vectors.shape
    if kind == FLAT:
        index, on_gpu = maybe_gpu(faiss.IndexFlatIP(dim))
        index.add(vectors)
        return index, AnnParams(kind=FLAT, n=n, dim=dim, gpu=on_gpu, tuned_recall=1.0, heldout_recall=1.0)

    if trained is not None and _reusable(trained[1], kind, n, dim):
        cpu, old = trained
        cpu.reset()  # drops the vectors, keeps the trained coarse quantizer (and codebooks)
        index, on_gpu = maybe_gpu(cpu)
        index.add(vectors)
        log.info("updated %s in place: %d vectors, %d lists", kind, n, old.nlist)
        built = AnnParams(kind=kind, n=n, dim=dim, nlist=old.nlist, pq_m=old.pq_m, coarse=old.coarse, gpu=on_gpu)
        return tuned_index(index, built, vectors, cfg, queries, query_source, seed)

    nlist = list_count(n, cfg)
    cpu, spec, keep = empty_index(kind, dim, nlist, cfg, seed)
    pq_m = int(spec.rsplit("PQ", 1)[1]) if kind == IVF_PQ else 0
    index, on_gpu = maybe_gpu(cpu)
    take = training_rows(n, nlist, kind, cfg, seed)
    train = vectors if take is None else vectors[take]
    log.info("training %s (%s): %d vectors on %d training points", kind, spec, n, len(train))
    index.train(train)
    index.add(vectors)
    coarse = "hnsw" if "_HNSW" in spec else "flat"
    built = AnnParams(kind=kind, n=n, dim=dim, nlist=nlist, pq_m=pq_m, coarse=coarse, gpu=on_gpu)
    return tuned_index(index, built, vectors, cfg, queries, query_source, seed)


def empty_index(
    kind: str, dim: int, nlist: int, cfg: AnnConfig, seed: int, on_disk: bool = False
) -> tuple[faiss.Index, str, object]:
    """An untrained IVF index of `kind` with its k-means settings: (index, factory string, an object the
    caller holds until train() has run). on_disk: as factory_string."""
    spec = factory_string(kind, dim, nlist, cfg, on_disk)
    cpu = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(cpu)
    ivf.cp.seed = seed
    ivf.cp.niter = 10  # coarse lists need no more (FAISS's own IVF default); keeps 1M builds in minutes
    ivf.cp.min_points_per_centroid = 5  # the training sample is capped on purpose (max_train_points)
    if kind == IVF_PQ:
        # Polysemous training (on by default) only renumbers each codebook's centroids, for Hamming
        # pre-filtering we never turn on (polysemous_ht 0): the same distances, at the cost of an annealing
        # that took 90+ s of a 12k x 64 test build
        faiss.downcast_index(ivf).do_polysemous_training = False
    clustering = None
    if nlist >= cfg.hnsw_coarse_min_lists:
        # k-means must assign exactly, never through the graph. FAISS already does: index_factory's
        # IVF<n>_HNSW32 sets quantizer_trains_alone = 2, so k-means (spherical for inner product) assigns
        # with a flat index and the graph is built over the final centroids (faiss 1.15.1, read back;
        # Level1Quantizer::train_q1). An earlier comment here said the default trains through the graph.
        # The flat inner-product index says so explicitly, and equals FAISS's flat L2 on unit vectors.
        clustering = faiss.IndexFlatIP(dim)  # FAISS does not own it: the caller holds it through train()
        ivf.clustering_index = clustering
    return cpu, spec, clustering


def training_rows(n: int, nlist: int, kind: str, cfg: AnnConfig, seed: int) -> np.ndarray | None:
    """Sorted rows of the k-means training sample of n vectors (None: all of them)."""
    # PQ codebooks (256 centroids each) want about 10k training points as well
    floor = max(nlist * cfg.min_points_per_list, 64 * nlist, 10_000 if kind == IVF_PQ else 0)
    n_train = min(n, floor, cfg.max_train_points)
    return np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False)) if n_train < n else None


def _reusable(old: AnnParams, kind: str, n: int, dim: int) -> bool:
    return old.kind == kind and old.dim == dim and old.n // 2 <= n <= old.n * 2
