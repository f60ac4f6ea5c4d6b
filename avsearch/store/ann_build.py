"""Building a FAISS index: train, add, tune, and fall back to a kind that reaches the recall target.

The lists before any vector (how many, k-means settings, training rows) are ann_train.py; the guided kind's
spills are ann_spill.py."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import (
    FLAT,
    IVF_FLAT,
    IVF_PQ,
    IVF_RABITQ_GUIDED,
    IVF_RABITQ_REFINE,
    IVF_SQ8_REFINE,
    AnnParams,
    choose_kind,
    maybe_gpu,
)
from avsearch.store.ann_coarse import exact_lists
from avsearch.store.ann_train import empty_index, list_count, training_rows
from avsearch.store.ann_tune import tuned_index
from avsearch.store.config import AnnConfig

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

log = logging.getLogger(__name__)


# When a kind's compressed codes cap recall below the target, the next kind of its chain is built: more
# precise codes first (SQ8: a byte per dimension), then the full vectors in the lists (IVF-Flat), which
# reach any recall given enough probes. Kinds whose full vectors do not fit memory have no fallback.
# The guided kind (query-guided spills over RaBitQ codes) comes first when a build has a guiding sample.
# Plain RaBitQ is not tried after it: the same 1-bit codes over the same lists, fewer copies and no route,
# so it plateaus where the guided kind does (measured on the plateau generator: guided 0.857, plain 0.285).
FALLBACKS = {
    IVF_RABITQ_GUIDED: (IVF_SQ8_REFINE, IVF_FLAT),
    IVF_RABITQ_REFINE: (IVF_SQ8_REFINE, IVF_FLAT),
    IVF_SQ8_REFINE: (IVF_FLAT,),
}


def build_index(
    vectors: np.ndarray,
    cfg: AnnConfig,
    queries: np.ndarray | None = None,
    query_source: str = "",
    seed: int = 0,
    trained: tuple[faiss.Index, AnnParams] | None = None,
    guide: np.ndarray | None = None,
) -> tuple[faiss.Index, AnnParams]:
    """Build (and for IVF kinds, tune) an index over vectors (N, d) float32, L2-normalised rows.

    queries (M, d): cross-modal query vectors in the same space, used only for tuning IVF indexes.
    guide (G, d): other cross-modal query vectors (none of `queries`): with cfg.query_guided, at least
    cfg.guide_min_sample of them and RaBitQ the refined codes, the first kind is IVF_RABITQ_GUIDED, whose
    lists get copies of the rows such queries want (store/ann_spill.py).
    trained: the previous (CPU index, params) of this table; its trained lists are reused (an update,
    not a rebuild) while the kind is unchanged and the size is within a factor 2 of the trained size.
    A kind whose held-out recall stays below the target is replaced by the next kind of its FALLBACKS
    chain that reaches it (the best one is kept, with a warning, when none does), so no index ships under
    its target while another kind would meet it; params.extra["fell_back_from"] lists the kinds passed.
    Returns the index (on GPU when FAISS has GPUs) and its parameters.
    """
    vectors = np.ascontiguousarray(vectors, np.float32)
    first = choose_kind(len(vectors), vectors.shape[1], cfg)
    if first == IVF_RABITQ_REFINE and guided(cfg, guide):
        first = IVF_RABITQ_GUIDED
    chain = (first, *FALLBACKS.get(first, ()))
    if trained is not None and trained[1].kind in chain and trained[1].extra.get("fell_back_from"):
        # an earlier build fell back: start where it ended. One that did not (e.g. an ivf_rabitq_refine built
        # before there was a guiding sample, or a guided kind) starts at the head of today's chain.
        chain = chain[chain.index(trained[1].kind) :]
    return first_on_target(
        chain, lambda kind: _build_kind(kind, vectors, cfg, queries, query_source, seed, trained, guide), cfg
    )


def guided(cfg: AnnConfig, guide: np.ndarray | None) -> bool:
    """Whether a build with this guiding sample starts with the guided kind."""
    return cfg.query_guided and guide is not None and len(guide) >= cfg.guide_min_sample


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
    guide: np.ndarray | None = None,
) -> tuple[faiss.Index, AnnParams]:
    """Build and tune one index of `kind` (build_index's steps for one kind)."""
    n, dim = vectors.shape
    if kind == FLAT:
        index, on_gpu = maybe_gpu(faiss.IndexFlatIP(dim))
        index.add(vectors)
        return index, AnnParams(kind=FLAT, n=n, dim=dim, gpu=on_gpu, tuned_recall=1.0, heldout_recall=1.0)
    if kind == IVF_RABITQ_GUIDED:
        assert guide is not None
        return _build_guided(vectors, cfg, queries, query_source, seed, trained, guide)

    if trained is not None and _reusable(trained[1], kind, n, dim):
        cpu, old = trained
        cpu.reset()  # drops the vectors, keeps the trained coarse quantizer (and codebooks)
        index, on_gpu = maybe_gpu(cpu)
        with exact_lists(cpu):
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
    with exact_lists(cpu):  # an HNSW coarse quantizer's graph would misfile vectors (ann_coarse.py)
        index.add(vectors)
    coarse = "hnsw" if "_HNSW" in spec else "flat"
    built = AnnParams(kind=kind, n=n, dim=dim, nlist=nlist, pq_m=pq_m, coarse=coarse, gpu=on_gpu)
    return tuned_index(index, built, vectors, cfg, queries, query_source, seed)


def _build_guided(
    vectors: np.ndarray,
    cfg: AnnConfig,
    queries: np.ndarray | None,
    query_source: str,
    seed: int,
    trained: tuple[faiss.Index, AnnParams] | None,
    guide: np.ndarray,
) -> tuple[faiss.Index, AnnParams]:
    """The guided kind (ann_spill.build_spilled), tuned as the refined kinds are. An update reuses the
    trained lists and codebooks of the previous guided build, with the spills and route shift computed
    anew for the vectors of now (a plain re-add would silently drop them)."""
    from avsearch.store.ann_spill import SpillSettings, build_spilled

    n, dim = vectors.shape
    reuse = trained if trained is not None and _reusable(trained[1], IVF_RABITQ_GUIDED, n, dim) else None
    nlist = reuse[1].nlist if reuse is not None else list_count(n, cfg)
    settings = SpillSettings(probe=cfg.spill_probe, cap=cfg.spill_cap)
    log.info("building %s: %d vectors, %d lists, %d guiding queries", IVF_RABITQ_GUIDED, n, nlist, len(guide))
    index, stats = build_spilled(
        vectors, guide, nlist, cfg, settings, seed, quantizer_from=None if reuse is None else reuse[0]
    )
    # the route shift itself is index.shift, saved beside the build (ann_files.save_ann)
    extra: dict[str, object] = {"spills": {**stats, "guide_sample": len(guide), "cap": settings.cap}}
    coarse = "hnsw" if nlist >= cfg.hnsw_coarse_min_lists else "flat"
    built = AnnParams(kind=IVF_RABITQ_GUIDED, n=n, dim=dim, nlist=nlist, coarse=coarse, extra=extra)
    return tuned_index(index, built, vectors, cfg, queries, query_source, seed)


def _reusable(old: AnnParams, kind: str, n: int, dim: int) -> bool:
    return old.kind == kind and old.dim == dim and old.n // 2 <= n <= old.n * 2
