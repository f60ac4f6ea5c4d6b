"""Semantic consistency (paper eq. 2): pseudo embeddings of the non-overlap modality.

For each overlap embedding t, the pseudo embedding is softmax(sim(t, memory) / tau1) @ memory. The exact
backend streams over the memory in blocks with an online softmax (running max and denominator, as in
flash attention), so its memory use is bounded by query_chunk x memory_chunk whatever the memory size,
and the result equals the dense formula up to float rounding. The faiss backend keeps only each query's
top-k memory neighbours (IVF index beyond 50k rows): with tau1 = 0.01 the weights of the rest are
negligible, and benchmarks/bridge.py reports the largest deviation from exact.

Ablations of table 5: "argmax" takes the single most similar memory entry (row I), "random" a uniformly
random one (row J).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from scipy import sparse
from tqdm.auto import tqdm

from avsearch.errors import ConfigError

log = logging.getLogger(__name__)

FLAT_BELOW = 50_000  # faiss backend: exact top-k (IndexFlatIP) below this many memory rows


def pseudo_embeddings(
    queries: np.ndarray,
    memory: np.ndarray,
    tau: float,
    mode: str = "softmax",
    backend: str = "exact",
    *,
    topk: int = 64,
    nprobe: int = 256,
    index: Any = None,
    query_chunk: int = 1024,
    memory_chunk: int = 65536,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Queries (N, d) and memory (M, d), both L2-normalised -> pseudo embeddings (N, d) float32.

    The result is not re-normalised (eq. 2 is a weighted mean); semantic completion does that.
    `index` (faiss backend): a prebuilt build_memory_index(memory), reused instead of building one.
    """
    if queries.shape[1] != memory.shape[1]:
        raise ConfigError(f"queries have {queries.shape[1]} columns, memory {memory.shape[1]}")
    if mode == "random":
        return _random(queries, memory, seed)
    if backend == "faiss":
        index = index if index is not None else build_memory_index(memory, nprobe=nprobe)
        return _faiss_topk(queries, memory, tau, mode, index=index, topk=topk, progress=progress)
    if backend != "exact":
        raise ConfigError(f"unknown consistency backend {backend!r}")
    return _exact(queries, memory, tau, mode, query_chunk, memory_chunk, torch.device(device), progress)


def _random(queries: np.ndarray, memory: np.ndarray, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).integers(0, memory.shape[0], queries.shape[0])
    return _gather(memory, idx)


def _gather(memory: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Sorted reads keep memory-mapped arrays fast; then restore the query order.
    order = np.argsort(idx, kind="stable")
    out = np.empty((idx.shape[0], memory.shape[1]), np.float32)
    out[order] = memory[idx[order]]
    return out


def _exact(
    queries: np.ndarray,
    memory: np.ndarray,
    tau: float,
    mode: str,
    query_chunk: int,
    memory_chunk: int,
    device: torch.device,
    progress: bool,
) -> np.ndarray:
    n, d = queries.shape
    out = np.empty((n, d), np.float32)
    mem_blocks = [(s, min(s + memory_chunk, memory.shape[0])) for s in range(0, memory.shape[0], memory_chunk)]
    # The memory is copied to the device once (as blocks), not once per query chunk.
    resident = [torch.tensor(np.asarray(memory[a:b], np.float32)).to(device) for a, b in mem_blocks]
    bar = tqdm(total=n, desc=f"consistency ({mode})", unit="q", disable=None if progress else True, leave=False)
    for qs in range(0, n, query_chunk):
        q = torch.tensor(np.asarray(queries[qs : qs + query_chunk], np.float32)).to(device)
        if mode == "softmax":
            out[qs : qs + q.shape[0]] = _online_softmax(q, resident, tau).cpu().numpy()
        elif mode == "argmax":
            best_val = torch.full((q.shape[0],), -math.inf, device=device)
            best_idx = torch.zeros(q.shape[0], dtype=torch.long, device=device)
            for (a, _), block in zip(mem_blocks, resident, strict=True):
                val, idx = (q @ block.T).max(dim=1)
                better = val > best_val
                best_val = torch.where(better, val, best_val)
                best_idx = torch.where(better, idx + a, best_idx)
            out[qs : qs + q.shape[0]] = _gather(memory, best_idx.cpu().numpy())
        else:
            raise ConfigError(f"unknown consistency mode {mode!r}")
        bar.update(q.shape[0])
    bar.close()
    return out


def _online_softmax(q: torch.Tensor, blocks: list[torch.Tensor], tau: float) -> torch.Tensor:
    """softmax(q @ M.T / tau) @ M over memory blocks, without materialising the full (n, M) matrix."""
    run_max = torch.full((q.shape[0], 1), -math.inf, device=q.device)
    denom = torch.zeros((q.shape[0], 1), device=q.device)
    acc = torch.zeros((q.shape[0], q.shape[1]), device=q.device)
    for block in blocks:
        logits = (q @ block.T) / tau
        new_max = torch.maximum(run_max, logits.max(dim=1, keepdim=True).values)
        rescale = torch.exp(run_max - new_max)  # exp(-inf) = 0 on the first block
        weights = torch.exp(logits - new_max)
        denom = denom * rescale + weights.sum(dim=1, keepdim=True)
        acc = acc * rescale + weights @ block
        run_max = new_max
    return acc / denom


def build_memory_index(memory: np.ndarray, nprobe: int = 256, seed: int = 0) -> Any:  # a faiss.Index
    """Inner-product FAISS index over the memory: flat below FLAT_BELOW rows, IVF-Flat above."""
    import faiss

    m, d = memory.shape
    data = np.ascontiguousarray(memory, np.float32)
    if m < FLAT_BELOW:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(min(65536, max(256, 4 * math.sqrt(m))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = data[rng.choice(m, size=min(m, 64 * nlist), replace=False)]
        index.train(sample)
        index.nprobe = nprobe
    index.add(data)
    return index


def _faiss_topk(
    queries: np.ndarray, memory: np.ndarray, tau: float, mode: str, *, index: Any, topk: int, progress: bool
) -> np.ndarray:
    n, d = queries.shape
    k = min(topk, memory.shape[0]) if mode == "softmax" else 1
    out = np.empty((n, d), np.float32)
    step = 8192
    for qs in tqdm(range(0, n, step), desc="consistency (faiss)", disable=None if progress else True, leave=False):
        q = np.ascontiguousarray(queries[qs : qs + step], np.float32)
        sims, idx = index.search(q, k)
        valid = idx >= 0  # IVF may return fewer than k hits; those come back as -1
        logits = np.where(valid, sims / tau, -np.inf)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        # The weighted mean as a sparse (queries x memory) product: no (queries, k, d) gather.
        rows = q.shape[0]
        mixing = sparse.csr_matrix(
            (weights[valid].astype(np.float32), idx[valid], np.concatenate([[0], np.cumsum(valid.sum(axis=1))])),
            shape=(rows, memory.shape[0]),
        )
        out[qs : qs + rows] = mixing @ memory
    return out
