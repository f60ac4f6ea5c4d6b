"""Semantic consistency (paper eq. 2): pseudo embeddings of the non-overlap modality.

For each overlap embedding t, the pseudo embedding is softmax(sim(t, memory) / tau1) @ memory. Backends:

- "exact" streams over the memory in blocks with an online softmax (running max and denominator, as in
  flash attention): memory use is bounded by query_chunk x memory_chunk whatever the memory size, and
  the result equals the dense formula up to float rounding. Enough on a GPU at the paper's scale.
- "approx" (bridge/memory_index.py) scores each query exactly against the rows of its `nprobe`
  nearest IVF lists only and takes the softmax over all of them; the probe budget is tuned on a seeded
  sample of the queries and the deviation measured on another (cosine to exact), see consistency_pass.
- "auto": exact on CUDA, approx on a CPU from `approx_above` memory rows (choose_backend).

Ablations of table 5: "argmax" takes the single most similar memory entry (row I), "random" a uniformly
random one (row J).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from avsearch.bridge.memory_index import ClusteredMemory, build_clustered_memory, clustered_pseudo
from avsearch.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("exact", "approx", "auto")
APPROX_ABOVE = 100_000  # "auto" on a CPU: memory rows from which approx pays (benchmarks/bridge.py: 11.9x at 100k)
NPROBE_STEPS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)  # probe budgets tried when tuning


def choose_backend(requested: str, device: torch.device | str, memory_rows: int, approx_above: int) -> str:
    """The backend "auto" stands for: exact on CUDA (a full paper-size pass is minutes there), approx on
    a CPU once the memory has `approx_above` rows (below that the exact pass is cheap enough)."""
    if requested not in BACKENDS:
        raise ConfigError(f"unknown consistency backend {requested!r}; valid: {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    if torch.device(device).type == "cuda":
        return "exact"
    return "approx" if memory_rows >= approx_above else "exact"


def pseudo_embeddings(
    queries: np.ndarray,
    memory: np.ndarray,
    tau: float,
    mode: str = "softmax",
    backend: str = "exact",
    *,
    nprobe: int = 16,
    nlist: int = 0,
    index: ClusteredMemory | None = None,
    approx_above: int = APPROX_ABOVE,
    query_chunk: int = 1024,
    memory_chunk: int = 65536,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Queries (N, d) and memory (M, d), both L2-normalised -> pseudo embeddings (N, d) float32.

    The result is not re-normalised (eq. 2 is a weighted mean); semantic completion does that.
    backend "approx": `index` is a prebuilt build_clustered_memory(memory), reused instead of building
    one; `nprobe` lists are scanned per query. "auto" is resolved by choose_backend(approx_above).
    """
    if queries.shape[1] != memory.shape[1]:
        raise ConfigError(f"queries have {queries.shape[1]} columns, memory {memory.shape[1]}")
    if mode == "random":
        return _random(queries, memory, seed)
    backend = choose_backend(backend, device, memory.shape[0], approx_above)
    if backend == "approx":
        index = index if index is not None else build_clustered_memory(memory, nlist, seed=seed, device=device)
        if index.n_rows != memory.shape[0]:
            raise ConfigError(f"the index holds {index.n_rows} rows, the memory {memory.shape[0]}")
        return clustered_pseudo(queries, index, tau, nprobe, mode, progress=progress)
    return _exact(queries, memory, tau, mode, query_chunk, memory_chunk, torch.device(device), progress)


@dataclass(frozen=True)
class ConsistencyReport:
    """How one memory's pass was computed, and how far the approximation is from exact."""

    backend: str  # "exact" or "approx" (auto resolved)
    device: str
    memory_rows: int
    seconds: float = 0.0
    nlist: int = 0  # approx only from here on
    nprobe: int = 0
    build_s: float = 0.0
    checked: int = 0  # held-out queries compared with exact (0: no check)
    mean_cos: float = 1.0
    min_cos: float = 1.0

    def line(self) -> str:
        """One log line: the choice and its measured deviation."""
        head = f"consistency: {self.backend} on {self.device}, {self.memory_rows:,} memory rows"
        if self.backend != "approx":
            return head + " (no approximation)"
        check = (
            f"cosine to exact on {self.checked} held-out queries: mean {self.mean_cos:.5f}, min {self.min_cos:.4f}"
            if self.checked
            else "not checked against exact"
        )
        return f"{head}, {self.nlist} lists, nprobe {self.nprobe} (build {self.build_s:.1f} s); {check}"


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of a with the same row of b."""
    num = np.sum(a * b, axis=1)
    return num / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def tune_nprobe(
    queries: np.ndarray,
    memory: np.ndarray,
    index: ClusteredMemory,
    tau: float,
    target: float,
    mode: str = "softmax",
    device: torch.device | str = "cpu",
) -> int:
    """The smallest NPROBE_STEPS budget whose mean cosine to exact on `queries` is at least `target`
    one standard error below the sample mean (all lists, i.e. exact up to rounding, if none is): the
    deviation has a heavy tail, so a bare sample mean just over target often lands under it on other
    queries. Pass queries that will not be measured."""
    exact = _exact(queries, memory, tau, mode, 1024, 65536, torch.device(device), False)
    for nprobe in [p for p in NPROBE_STEPS if p < index.nlist] + [index.nlist]:
        cos = row_cosine(exact, clustered_pseudo(queries, index, tau, nprobe, mode))
        if float(cos.mean() - cos.std() / math.sqrt(len(cos))) >= target:
            return nprobe
    return index.nlist


def consistency_pass(
    queries: np.ndarray,
    memory: np.ndarray,
    tau: float,
    *,
    mode: str = "softmax",
    backend: str = "auto",
    approx_above: int = APPROX_ABOVE,
    nlist: int = 0,
    nprobe: int = 0,
    target_cosine: float = 0.999,
    check_queries: int = 256,
    query_chunk: int = 1024,
    memory_chunk: int = 65536,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[np.ndarray, ConsistencyReport]:
    """Eq. 2 for one memory with the backend policy applied: (pseudo embeddings (N, d), report).

    approx: the memory index is built once for the whole pass; nprobe 0 tunes the budget on a seeded
    sample of `check_queries` queries (smallest budget with mean cosine >= target_cosine), and a second,
    disjoint sample measures the deviation that the report states.
    """
    started = time.perf_counter()
    dev = torch.device(device)
    chosen = choose_backend(backend, dev, memory.shape[0], approx_above) if mode != "random" else "exact"
    if chosen == "exact":
        out = pseudo_embeddings(
            queries,
            memory,
            tau,
            mode,
            "exact",
            query_chunk=query_chunk,
            memory_chunk=memory_chunk,
            seed=seed,
            device=dev,
            progress=progress,
        )
        return out, ConsistencyReport("exact", str(dev), memory.shape[0], time.perf_counter() - started)
    index = build_clustered_memory(memory, nlist, seed=seed, device=dev)
    rng = np.random.default_rng(seed)
    n_check = min(check_queries, queries.shape[0] // 2)
    sample = np.sort(rng.choice(queries.shape[0], size=2 * n_check, replace=False)) if n_check else np.array([], int)
    tune_rows, check_rows = sample[::2], sample[1::2]
    if nprobe <= 0:
        if not n_check:
            raise ConfigError("consistency.nprobe = 0 (tune) needs check_queries > 0 and at least 2 queries")
        nprobe = tune_nprobe(queries[tune_rows], memory, index, tau, target_cosine, mode, dev)
    out = clustered_pseudo(queries, index, tau, nprobe, mode, progress=progress)
    mean_cos = min_cos = 1.0
    if n_check:
        exact = _exact(queries[check_rows], memory, tau, mode, query_chunk, memory_chunk, dev, False)
        cos = row_cosine(exact, out[check_rows])
        mean_cos, min_cos = float(cos.mean()), float(cos.min())
    report = ConsistencyReport(
        "approx",
        str(dev),
        memory.shape[0],
        time.perf_counter() - started,
        index.nlist,
        nprobe,
        index.build_s,
        len(check_rows),
        mean_cos,
        min_cos,
    )
    return out, report


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
