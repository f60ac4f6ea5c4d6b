"""FAISS index kinds, their choice by size and memory, and what every stage of an index shares.

Choice by size and memory (AnnConfig):
- up to `exact_max_vectors`: IndexFlatIP, exact;
- above, while full-precision vectors fit `memory_budget_gb`: IVF whose lists hold compact codes
  (`refined_codes`: RaBitQ, 1 bit per dimension, or SQ8) scanned first, then the best k x k_factor
  candidates re-ranked exactly on the full vectors (IndexRefineFlat). Scanning codes instead of floats
  is what makes probing many lists cheap, and cross-modal queries need many (benchmarks/search.py).
  With a guiding sample of the other modality's vectors, RaBitQ lists that also hold query-guided
  spills are built first (IVF_RABITQ_GUIDED, store/ann_spill.py; ann_build.build_index). With FAISS
  on a GPU, IVF-Flat (searched there);
- above the memory budget, IVF with 8-bit scalar codes (4x smaller), then IVF-PQ (16x smaller).
At `hnsw_coarse_min_lists` lists or more (off by default: see configs/search.toml) the coarse quantizer
is an HNSW graph, so finding the lists to probe stays cheap with many fine lists.

The build is ann_build.py, its tuning ann_tune.py, a built index's search settings ann_search.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.config import AnnConfig

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)

log = logging.getLogger(__name__)

FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ = "flat", "ivf_flat", "ivf_sq8", "ivf_pq"
IVF_RABITQ_REFINE, IVF_SQ8_REFINE = "ivf_rabitq_refine", "ivf_sq8_refine"
# RaBitQ codes whose lists also hold copies of the rows sample queries want there (store/ann_spill.py):
# first of the chain when a build has a guiding sample (ann_build.build_index)
IVF_RABITQ_GUIDED = "ivf_rabitq_guided"
REFINED = {"rabitq": IVF_RABITQ_REFINE, "sq8": IVF_SQ8_REFINE}  # refined_codes -> kind
RERANKED = (IVF_RABITQ_REFINE, IVF_SQ8_REFINE, IVF_RABITQ_GUIDED)  # kinds searched with a k_factor
CODES = {IVF_FLAT: "Flat", IVF_SQ8: "SQ8", IVF_RABITQ_REFINE: "RaBitQ,RFlat", IVF_SQ8_REFINE: "SQ8,RFlat"}
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
