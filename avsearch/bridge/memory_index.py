"""Clustered memory for approximate semantic consistency (eq. 2) at the paper's scale on a CPU.

The memory is split into IVF lists by spherical k-means and stored sorted by list. A batch of queries
picks each query's `nprobe` nearest lists by centroid; then every list is visited once per batch and
scored against all the queries that probe it as one dense matrix product, with exact float32
similarities. The softmax is taken over every row of the probed lists (an online softmax across lists,
as in the exact backend), not over a top-k: at tau1 = 0.01 a structured memory spreads the weight over
a whole concept's neighbourhood (benchmarks/bridge.py measures ~30% of it outside the top 64 at 1M
rows), and a list holds such a neighbourhood whole. What is lost is only the weight in lists a query
does not probe.

Work per query is nprobe / nlist of the exact backend's, done as matrix products instead of the
memory-bound scans of a FAISS IVF search; the same code runs on CUDA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from avsearch.errors import ConfigError

QUERY_BATCH = 65536  # queries per pass over the lists: ~1,000 meet each list at nprobe/nlist = 1/64, and
# GEMMs that tall run ~2x faster on a CPU than 256-row ones; queries and sums take 256 MB at d = 512
ASSIGN_CHUNK = 65536  # memory rows assigned to lists per step while building


@dataclass
class ClusteredMemory:
    """A memory (M, d) in `nlist` IVF lists: list c is sorted[offsets[c]:offsets[c + 1]]."""

    centroids: torch.Tensor  # (nlist, d), unit norm
    sorted: torch.Tensor  # (M, d) float32, the memory rows ordered by list
    rows: torch.Tensor  # (M,) original memory row of each sorted position
    offsets: list[int]  # nlist + 1 list boundaries
    build_s: float  # seconds the build took

    @property
    def nlist(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.sorted.shape[0])


def default_nlist(m: int) -> int:
    """Lists for an M-row memory: about sqrt(M) (1,000 rows a list at 1M), so a list is one GEMM block."""
    return int(min(8192, max(1, round(math.sqrt(m)))))


def build_clustered_memory(
    memory: np.ndarray,
    nlist: int = 0,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    sample_per_list: int = 32,
    iters: int = 10,
) -> ClusteredMemory:
    """Spherical k-means on a small seeded sample, then every memory row to its nearest centroid.
    `nlist` 0 means default_nlist(M). At 1M rows, 32 samples a list and 10 iterations reach a mean cosine
    of 0.999 at nprobe 16 where 16 and 6 needed 24 (benchmarks/bridge.py data)."""
    started = time.perf_counter()
    m, d = memory.shape
    nlist = min(nlist or default_nlist(m), m)
    if nlist < 1:
        raise ConfigError(f"cannot build a clustered memory of {m} rows")
    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(m, size=min(m, sample_per_list * nlist), replace=False))
    sample = torch.tensor(np.asarray(memory[picked], np.float32), device=dev)
    centroids = sample[torch.from_numpy(rng.choice(len(sample), size=nlist, replace=False)).to(dev)].clone()
    for _ in range(iters):
        assign = (sample @ centroids.T).argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, sample)
        empty = torch.bincount(assign, minlength=nlist) == 0
        sums[empty] = centroids[empty]  # an empty list keeps its centroid
        centroids = torch.nn.functional.normalize(sums, dim=1)
    # The assignment of all M rows dominates the build; bfloat16 products are ~3x faster on CPUs with
    # AVX512-BF16, and a rounding error only moves a row near a list border to the neighbouring list.
    low = torch.bfloat16 if dev.type == "cpu" else torch.float16
    cent_low = centroids.T.to(low)
    assign = torch.empty(m, dtype=torch.long, device=dev)
    for s in range(0, m, ASSIGN_CHUNK):
        block = torch.tensor(np.asarray(memory[s : s + ASSIGN_CHUNK], np.float32), device=dev)
        assign[s : s + block.shape[0]] = (block.to(low) @ cent_low).argmax(dim=1)
    order = torch.argsort(assign, stable=True)
    counts = torch.bincount(assign, minlength=nlist)
    offsets = [0, *torch.cumsum(counts, 0).tolist()]
    sorted_rows = torch.empty((m, d), dtype=torch.float32, device=dev)
    order_np = order.cpu().numpy()
    for s in range(0, m, ASSIGN_CHUNK):  # gathered in chunks: no second full float32 copy on the host
        idx = order_np[s : s + ASSIGN_CHUNK]
        sorted_rows[s : s + len(idx)] = torch.tensor(_take(memory, idx), device=dev)
    return ClusteredMemory(centroids, sorted_rows, order, offsets, time.perf_counter() - started)


def _take(memory: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Sorted reads keep memory-mapped arrays fast; then restore the requested order.
    perm = np.argsort(idx, kind="stable")
    out = np.empty((len(idx), memory.shape[1]), np.float32)
    out[perm] = memory[idx[perm]]
    return out


def clustered_pseudo(
    queries: np.ndarray,
    index: ClusteredMemory,
    tau: float,
    nprobe: int,
    mode: str = "softmax",
    *,
    batch: int = QUERY_BATCH,
    progress: bool = False,
) -> np.ndarray:
    """Eq. 2 over the `nprobe` lists nearest each query: queries (N, d) -> (N, d) float32.

    mode "softmax": the softmax-weighted mean of every row in the probed lists (exact scores);
    "argmax": the most similar row among them (table 5, row I).
    """
    if mode not in ("softmax", "argmax"):
        raise ConfigError(f"unknown consistency mode {mode!r}")
    n, d = queries.shape
    dev = index.sorted.device
    out = np.empty((n, d), np.float32)
    sizes = torch.tensor([b - a for a, b in zip(index.offsets, index.offsets[1:], strict=False)], device=dev)
    probes = min(max(nprobe, 1), int((sizes > 0).sum()))  # a list left empty by k-means is never probed
    bar = tqdm(total=n, desc=f"consistency (approx, {mode})", unit="q", disable=None if progress else True, leave=False)
    for qs in range(0, n, batch):
        q = torch.tensor(np.asarray(queries[qs : qs + batch], np.float32), device=dev)
        coarse = q @ index.centroids.T
        coarse[:, sizes == 0] = -math.inf  # never probe an empty list: a query would get no rows
        probe = coarse.topk(probes, dim=1).indices.reshape(-1)
        qid = torch.arange(q.shape[0], device=dev).repeat_interleave(probes)
        by_list = torch.argsort(probe, stable=True)
        probe, qid = probe[by_list], qid[by_list]
        per_list = torch.bincount(probe, minlength=index.nlist).tolist()
        if mode == "softmax":
            res = _softmax_over_lists(q, index, qid, per_list, tau)
        else:
            res = _argmax_over_lists(q, index, qid, per_list)
        out[qs : qs + q.shape[0]] = res.cpu().numpy()
        bar.update(q.shape[0])
    bar.close()
    return out


def _softmax_over_lists(
    q: torch.Tensor, index: ClusteredMemory, qid: torch.Tensor, per_list: list[int], tau: float
) -> torch.Tensor:
    """Online softmax per query across the lists it probes (each query meets a list at most once)."""
    run_max = torch.full((q.shape[0], 1), -math.inf, device=q.device)
    denom = torch.zeros((q.shape[0], 1), device=q.device)
    acc = torch.zeros_like(q)
    pos = 0
    for c, k in enumerate(per_list):
        if k == 0:
            continue
        ids = qid[pos : pos + k]
        pos += k
        block = index.sorted[index.offsets[c] : index.offsets[c + 1]]
        logits = (q[ids] @ block.T) / tau
        old = run_max[ids]
        new = torch.maximum(old, logits.max(dim=1, keepdim=True).values)
        weights = torch.exp(logits - new)
        rescale = torch.exp(old - new)  # exp(-inf) = 0 for a query's first list
        denom[ids] = denom[ids] * rescale + weights.sum(dim=1, keepdim=True)
        acc[ids] = acc[ids] * rescale + weights @ block
        run_max[ids] = new
    return acc / denom


def _argmax_over_lists(q: torch.Tensor, index: ClusteredMemory, qid: torch.Tensor, per_list: list[int]) -> torch.Tensor:
    best_val = torch.full((q.shape[0],), -math.inf, device=q.device)
    best_pos = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    pos = 0
    for c, k in enumerate(per_list):
        if k == 0:
            continue
        ids = qid[pos : pos + k]
        pos += k
        val, arg = (q[ids] @ index.sorted[index.offsets[c] : index.offsets[c + 1]].T).max(dim=1)
        better = val > best_val[ids]
        best_val[ids] = torch.where(better, val, best_val[ids])
        best_pos[ids] = torch.where(better, arg + index.offsets[c], best_pos[ids])
    return index.sorted[best_pos]
