"""FAISS index choice, construction and recall tuning.

Choice by size and memory (AnnConfig):
- up to `exact_max_vectors`: IndexFlatIP, exact;
- above, while full-precision vectors fit `memory_budget_gb`: IVF whose lists hold compact codes
  (`refined_codes`: RaBitQ, 1 bit per dimension, or SQ8) scanned first, then the best k x k_factor
  candidates re-ranked exactly on the full vectors (IndexRefineFlat). Scanning codes instead of floats
  is what makes probing many lists cheap, and cross-modal queries need many (benchmarks/search.py);
  with FAISS on a GPU, IVF-Flat (searched there);
- above the memory budget, IVF with 8-bit scalar codes (4x smaller), then IVF-PQ (16x smaller).
At `hnsw_coarse_min_lists` lists or more (off by default: see configs/search.toml) the coarse quantizer
is an HNSW graph, so finding the lists to probe stays cheap with many fine lists.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann_disk import DiskRefine
from avsearch.store.config import AnnConfig

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

log = logging.getLogger(__name__)

FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ = "flat", "ivf_flat", "ivf_sq8", "ivf_pq"
IVF_RABITQ_REFINE, IVF_SQ8_REFINE = "ivf_rabitq_refine", "ivf_sq8_refine"
REFINED = {"rabitq": IVF_RABITQ_REFINE, "sq8": IVF_SQ8_REFINE}  # refined_codes -> kind
_CODES = {IVF_FLAT: "Flat", IVF_SQ8: "SQ8", IVF_RABITQ_REFINE: "RaBitQ,RFlat", IVF_SQ8_REFINE: "SQ8,RFlat"}
RECALL_K = 10
HNSW_EF_SEARCH = 64  # the HNSW coarse quantizer's search width (at least nprobe)


@dataclass
class AnnParams:
    """What was built and how well it recalls; saved as JSON beside the index."""

    kind: str
    n: int
    dim: int
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    k_factor: int = 0  # refined kinds: k x k_factor code-scan candidates re-ranked on the full vectors
    coarse: str = "flat"  # coarse quantizer of IVF kinds: "flat" or "hnsw"
    tuned_recall: float | None = None  # recall@10 vs exact on the tuning half of the queries
    heldout_recall: float | None = None  # ... and on the held-out half
    tuning_queries: int = 0
    tuning_source: str = ""  # where the cross-modal queries came from
    gpu: bool = False
    # refined kinds: the full vectors for re-ranking are in a file beside the index (ann_disk.DiskRefine),
    # not in the index (IndexRefineFlat), so the index in RAM holds only the codes
    vectors_on_disk: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu, or a GPU build on a machine without CUDA)."""
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


def choose_kind(n: int, dim: int, cfg: AnnConfig, gpu: bool | None = None) -> str:
    """The index kind for n vectors of width dim under the config's size and memory limits.

    gpu: whether FAISS has a GPU (None: ask FAISS). There IVF-Flat is searched on the GPU; refined kinds
    have no GPU implementation."""
    if n <= cfg.exact_max_vectors:
        return FLAT
    budget = cfg.memory_budget_gb * 1024**3
    if n * dim * 4 <= budget:
        if cfg.refined_codes == "none" or (gpu_count() > 0 if gpu is None else gpu):
            return IVF_FLAT
        return REFINED[cfg.refined_codes]
    if n * dim <= budget:
        return IVF_SQ8
    return IVF_PQ


def vectors_on_disk(n: int, dim: int, cfg: AnnConfig) -> bool:
    """Whether n vectors of width dim are indexed with their full vectors on disk (ann_stream.build_streamed):
    above the exact size and the memory budget, when the config allows it."""
    return cfg.vectors_on_disk and n > cfg.exact_max_vectors and n * dim * 4 > cfg.memory_budget_gb * 1024**3


def _nlist(n: int, cfg: AnnConfig) -> int:
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
    codes = _CODES[kind]
    return f"{coarse},{codes.removesuffix(',RFlat') if on_disk else codes}"


def search_parameters(
    params: AnnParams, sel: faiss.IDSelector | None = None, nprobe: int | None = None, k_factor: int | None = None
) -> faiss.SearchParameters | None:
    """Per-search settings for an index built as `params`: a row selector (metadata filters), nprobe and
    k_factor overrides. None when there is nothing to set (the index's own settings apply)."""
    if params.kind == FLAT:
        return None if sel is None else faiss.SearchParameters(sel=sel)
    ivf = faiss.SearchParametersIVF(nprobe=nprobe or params.nprobe)
    if sel is not None:
        ivf.sel = sel
    if params.coarse == "hnsw":
        ivf.quantizer_params = coarse = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, ivf.nprobe))
        ivf.referenced_coarse = coarse
    if params.kind not in (IVF_RABITQ_REFINE, IVF_SQ8_REFINE):
        ivf.referenced = sel  # the SWIG proxies must outlive the search
        return ivf
    refine = faiss.IndexRefineSearchParameters(k_factor=float(k_factor or params.k_factor), base_index_params=ivf)
    refine.referenced = (ivf, sel)
    return refine


def configure(index: faiss.Index, params: AnnParams) -> None:
    """Set the tuned nprobe (and k_factor) on a built or loaded index, so plain searches use them."""
    if params.kind == FLAT:
        return
    if isinstance(index, DiskRefine):  # codes in RAM, re-ranked from the vectors file
        index.k_factor = float(params.k_factor or 1)
        index = index.base
    set_nprobe(index, params.nprobe)
    if params.coarse == "hnsw":  # CPU only: refined kinds are never moved to a GPU
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
        quantizer.hnsw.efSearch = max(HNSW_EF_SEARCH, params.nprobe)
    if params.k_factor and not params.vectors_on_disk:
        faiss.downcast_index(index).k_factor = float(params.k_factor)


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k ids: vectors (N, d), queries (M, d) -> (M, min(k, N)) int64."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, np.float32))
    _, ids = index.search(np.ascontiguousarray(queries, np.float32), min(k, vectors.shape[0]))
    return ids


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each exact top-k row found in the matching approximate row: (M, k) each."""
    if exact.size == 0:
        return 1.0
    hits = [len(set(a[a >= 0].tolist()) & set(e.tolist())) / len(e) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits))


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Set nprobe on a CPU or GPU IVF index (no-op for flat ones)."""
    try:
        faiss.extract_index_ivf(index).nprobe = nprobe
    except RuntimeError:
        if hasattr(index, "nprobe"):  # GPU IVF indexes are not extractable
            index.nprobe = nprobe


def maybe_gpu(index: faiss.Index) -> tuple[faiss.Index, bool]:
    if gpu_count() == 0:
        return index, False
    try:
        return faiss.index_cpu_to_all_gpus(index), True
    except Exception as exc:  # e.g. a kind without a GPU implementation: CPU still works
        log.warning("FAISS GPU transfer failed, using CPU: %s", exc)
        return index, False


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of a GPU index (for saving); CPU indexes come back as they are."""
    return faiss.index_gpu_to_cpu(index) if "Gpu" in type(index).__name__ else index


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
        return _tuned(index, built, vectors, cfg, queries, query_source, seed)

    nlist = _nlist(n, cfg)
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
    return _tuned(index, built, vectors, cfg, queries, query_source, seed)


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


def _tuned(
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
    tune_q, held_q = (queries[order[:half]], queries[order[half:]]) if half >= 10 else (queries, queries)
    k = min(RECALL_K, params.n)
    if exact is None:
        truth_tune, truth_held = exact_topk(vectors, tune_q, k), exact_topk(vectors, held_q, k)
    else:
        truth_tune, truth_held = exact(tune_q, k), exact(held_q, k)
    goal = min(1.0, cfg.target_recall + cfg.tuning_margin)
    refined = params.kind in (IVF_RABITQ_REFINE, IVF_SQ8_REFINE)

    def recall(nprobe: int, k_factor: int, q: np.ndarray, truth: np.ndarray) -> float:
        p = search_parameters(params, nprobe=nprobe, k_factor=k_factor)
        return recall_at_k(index.search(q, k, params=p)[1], truth)

    found: list[tuple[float, int, int, float]] = []  # (seconds, nprobe, k_factor, recall)
    ceiling = params.nlist
    for k_factor in cfg.k_factors if refined else (0,):
        nprobe, got = _smallest_nprobe(
            lambda p, kf=k_factor: recall(p, kf, tune_q, truth_tune), ceiling, goal, capped=params.kind != IVF_FLAT
        )
        if got < goal:
            found.append((math.inf, nprobe, k_factor, got))  # the codes cap recall here: more re-ranking
            continue
        ceiling = nprobe  # a larger k_factor never needs more lists
        p = search_parameters(params, nprobe=nprobe, k_factor=k_factor)
        start = time.perf_counter()
        index.search(tune_q, k, params=p)
        found.append((time.perf_counter() - start, nprobe, k_factor, got))
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


def _smallest_nprobe(recall: Callable[[int], float], nlist: int, goal: float, capped: bool) -> tuple[int, float]:
    """Smallest nprobe in [1, nlist] with recall(nprobe) >= goal: (nprobe, its recall). When none
    reaches the goal: (the nprobe where recall stopped growing, its recall). capped: compressed codes
    bound recall, so a doubling that gains almost nothing ends the search (IVF-Flat reaches 1.0)."""
    # Doubling finds a passing nprobe; bisection then finds the smallest one.
    lo, hi = 0, 1
    got = recall(hi)
    while got < goal and hi < nlist:
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
