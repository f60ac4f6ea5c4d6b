"""An IVF index's lists before any vector is added: how many, its FAISS description, the untrained index
with its k-means settings, and the rows k-means trains on (shared by every build: ann_build, ann_stream,
ann_spill)."""

from __future__ import annotations

import math

import numpy as np

from avsearch.lazy_import import lazy_module
from avsearch.store.ann import CODES, IVF_PQ
from avsearch.store.config import AnnConfig

faiss = lazy_module("faiss")  # imported on first use (avsearch/lazy_import.py)


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
