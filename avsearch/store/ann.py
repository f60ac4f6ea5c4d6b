"""FAISS index choice, construction and recall tuning.

Choice by size and memory (AnnConfig):
- up to `exact_max_vectors`: IndexFlatIP, exact;
- above, while full-precision vectors fit `memory_budget_gb`: IVF-Flat;
- above that, IVF with 8-bit scalar codes (4x smaller), then IVF-PQ (16x smaller).

IVF indexes are tuned on *cross-modal* query vectors (audio projections against image vectors, text
against audio, ...). Those queries sit outside the clusters of the indexed modality (the modality gap),
so they need more probed lists than queries that look like the data. `nprobe` is the smallest value
whose recall@10 against exact search reaches target + margin on half of the queries; the other half is
held out and its recall is recorded beside the index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import faiss
import numpy as np

from avsearch.store.config import AnnConfig

log = logging.getLogger(__name__)

FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ = "flat", "ivf_flat", "ivf_sq8", "ivf_pq"
RECALL_K = 10


@dataclass
class AnnParams:
    """What was built and how well it recalls; saved as JSON beside the index."""

    kind: str
    n: int
    dim: int
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    tuned_recall: float | None = None  # recall@10 vs exact on the tuning half of the queries
    heldout_recall: float | None = None  # ... and on the held-out half
    tuning_queries: int = 0
    tuning_source: str = ""  # where the cross-modal queries came from
    gpu: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu, or a GPU build on a machine without CUDA)."""
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


def choose_kind(n: int, dim: int, cfg: AnnConfig) -> str:
    """The index kind for n vectors of width dim under the config's size and memory limits."""
    if n <= cfg.exact_max_vectors:
        return FLAT
    budget = cfg.memory_budget_gb * 1024**3
    if n * dim * 4 <= budget:
        return IVF_FLAT
    if n * dim <= budget:
        return IVF_SQ8
    return IVF_PQ


def _nlist(n: int, cfg: AnnConfig) -> int:
    # FAISS's guidance is 4-16 sqrt(n) lists. Finer lists need far fewer probes for cross-modal
    # queries (measured: 200k vectors, recall@10 0.97 at 16 of 1788 lists vs 165 of 447), never
    # with fewer points per list than k-means needs.
    return max(1, min(int(cfg.lists_per_sqrt_n * math.sqrt(n)), n // cfg.min_points_per_list))


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
    Returns the index (on GPU when FAISS has GPUs) and its parameters.
    """
    vectors = np.ascontiguousarray(vectors, np.float32)
    n, dim = vectors.shape
    kind = choose_kind(n, dim, cfg)
    if kind == FLAT:
        index, on_gpu = maybe_gpu(faiss.IndexFlatIP(dim))
        index.add(vectors)
        return index, AnnParams(kind=FLAT, n=n, dim=dim, gpu=on_gpu, tuned_recall=1.0, heldout_recall=1.0)

    if trained is not None and _reusable(trained[1], kind, n, dim):
        cpu, old = trained
        cpu.reset()  # drops the vectors, keeps the trained coarse quantizer (and codebooks)
        nlist, pq_m = old.nlist, old.pq_m
        index, on_gpu = maybe_gpu(cpu)
        index.add(vectors)
        log.info("updated %s in place: %d vectors, %d lists", kind, n, nlist)
        return _tuned(index, vectors, cfg, queries, query_source, seed, kind, nlist, pq_m, on_gpu)

    nlist = _nlist(n, cfg)
    quantizer = faiss.IndexFlatIP(dim)
    pq_m = 0
    if kind == IVF_FLAT:
        cpu = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    elif kind == IVF_SQ8:
        cpu = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        # one byte per 8 dimensions (64 bytes for 512-d): 16x smaller than float32
        pq_m = max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)
        cpu = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
    cpu.cp.seed = seed
    cpu.cp.niter = 10  # coarse lists need no more (FAISS's own IVF default); keeps 1M builds in minutes
    index, on_gpu = maybe_gpu(cpu)
    rng = np.random.default_rng(seed)
    # PQ codebooks (256 centroids each) want about 10k training points as well
    floor = max(nlist * cfg.min_points_per_list, 64 * nlist, 10_000 if kind == IVF_PQ else 0)
    n_train = min(n, floor, cfg.max_train_points)
    train = vectors[np.sort(rng.choice(n, n_train, replace=False))] if n_train < n else vectors
    log.info("training %s: %d vectors, %d lists on %d training points", kind, n, nlist, len(train))
    index.train(train)
    index.add(vectors)
    return _tuned(index, vectors, cfg, queries, query_source, seed, kind, nlist, pq_m, on_gpu)


def _reusable(old: AnnParams, kind: str, n: int, dim: int) -> bool:
    return old.kind == kind and old.dim == dim and old.n // 2 <= n <= old.n * 2


def _tuned(
    index: faiss.Index,
    vectors: np.ndarray,
    cfg: AnnConfig,
    queries: np.ndarray | None,
    query_source: str,
    seed: int,
    kind: str,
    nlist: int,
    pq_m: int,
    on_gpu: bool,
) -> tuple[faiss.Index, AnnParams]:
    n, dim = vectors.shape
    rng = np.random.default_rng(seed + 1)
    if queries is None or len(queries) == 0:
        queries, query_source = _synthetic_gap_queries(vectors, cfg.max_tuning_queries, rng), "synthetic-gap"
        log.warning("no cross-modal queries to tune %s on: using data vectors with the mean removed", kind)
    queries = np.ascontiguousarray(queries, np.float32)
    if len(queries) > cfg.max_tuning_queries:
        queries = queries[rng.choice(len(queries), cfg.max_tuning_queries, replace=False)]
    nprobe, tuned, heldout = tune_nprobe(index, vectors, queries, cfg, nlist, rng)
    params = AnnParams(
        kind=kind,
        n=n,
        dim=dim,
        nlist=nlist,
        nprobe=nprobe,
        pq_m=pq_m,
        tuned_recall=tuned,
        heldout_recall=heldout,
        tuning_queries=len(queries),
        tuning_source=query_source,
        gpu=on_gpu,
    )
    if heldout < cfg.target_recall:
        log.warning(
            "%s over %d vectors reaches recall@10 %.3f on held-out cross-modal queries, below the target %.2f",
            kind,
            n,
            heldout,
            cfg.target_recall,
        )
    return index, params


def _synthetic_gap_queries(vectors: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Stand-ins for cross-modal queries: data vectors with the common (mean) direction removed.

    The modality gap is mostly a shift along that direction, so these fall outside the data's cone.
    """
    sample = vectors[rng.choice(len(vectors), min(m, len(vectors)), replace=False)]
    q = sample - vectors[: min(len(vectors), 100_000)].mean(axis=0, keepdims=True)
    return (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def tune_nprobe(
    index: faiss.Index,
    vectors: np.ndarray,
    queries: np.ndarray,
    cfg: AnnConfig,
    nlist: int,
    rng: np.random.Generator,
) -> tuple[int, float, float]:
    """Smallest nprobe reaching target + margin on the tuning half: (nprobe, tuned, held-out recall)."""
    order = rng.permutation(len(queries))
    half = len(order) // 2
    tune_q, held_q = (queries[order[:half]], queries[order[half:]]) if half >= 10 else (queries, queries)
    k = min(RECALL_K, len(vectors))
    truth_tune, truth_held = exact_topk(vectors, tune_q, k), exact_topk(vectors, held_q, k)
    goal = min(1.0, cfg.target_recall + cfg.tuning_margin)

    def recall(nprobe: int, q: np.ndarray, truth: np.ndarray) -> float:
        set_nprobe(index, nprobe)
        return recall_at_k(index.search(q, k)[1], truth)

    # Doubling finds a passing nprobe; bisection then finds the smallest one (recall grows with nprobe).
    lo, hi = 0, 1
    while hi < nlist and recall(hi, tune_q, truth_tune) < goal:
        lo, hi = hi, min(nlist, hi * 2)
    if hi == nlist and recall(hi, tune_q, truth_tune) < goal:
        lo = hi - 1  # even probing every list misses the goal (compressed codes): no bisection
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if recall(mid, tune_q, truth_tune) >= goal:
            hi = mid
        else:
            lo = mid
    tuned = recall(hi, tune_q, truth_tune)
    heldout = recall(hi, held_q, truth_held)
    set_nprobe(index, hi)
    log.info("nprobe %d/%d: recall@10 %.3f (tuning), %.3f (held out)", hi, nlist, tuned, heldout)
    return hi, tuned, heldout
