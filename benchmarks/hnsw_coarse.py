"""The HNSW coarse quantizer's suspects (issue 26, goal 3), each measured apart from a full 1M build.

    .venv/bin/python benchmarks/hnsw_coarse.py graph --lists 16000       # does the graph find the lists?
    .venv/bin/python benchmarks/hnsw_coarse.py ivf --n 100000 --lists 8000   # RaBitQ behind it vs flat

graph: HNSW32 (efConstruction 40, inner product) over `lists` unit centroid stand-ins in the data's cone
(means of 4 data vectors: k-means is too slow on a shared machine); for cross-modal and same-modality
queries, the fraction of the flat quantizer's top-nprobe lists the graph returns.
ivf: the same random data points as centroids behind a flat and an HNSW coarse quantizer of
IVF-RaBitQ + RFlat (so k-means plays no part); recall@10 of each at the same nprobe and k_factor.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search import gap_vectors  # noqa: E402

from avsearch.store.ann import AnnParams, exact_topk, recall_at_k  # noqa: E402
from avsearch.store.ann_search import search_parameters  # noqa: E402


def graph(lists: int) -> None:
    data, _, q = gap_vectors(4 * lists + 500, 500, 512, max(100, lists // 25), seed=1, noise=0.7)
    same = data[-500:]
    c = data[: 4 * lists].reshape(lists, 4, 512).mean(axis=1)
    c = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
    flat = faiss.IndexFlatIP(512)
    flat.add(c)
    h = faiss.IndexHNSWFlat(512, 32, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    h.add(c)
    print(f"{lists} lists, graph built in {time.perf_counter() - t:.0f} s", flush=True)
    for name, qs in (("cross-modal", q), ("same-modality", same)):
        for nprobe in (16, 128, 512):
            exact = flat.search(qs, nprobe)[1]
            for ef in (max(64, nprobe), 4 * nprobe):
                h.hnsw.efSearch = ef
                got = h.search(qs, nprobe)[1]
                found = np.mean([len(set(a) & set(b)) / nprobe for a, b in zip(got, exact, strict=True)])
                print(f"{name:13s} nprobe {nprobe:4d} efSearch {ef:5d}: top-nprobe lists found {found:.3f}", flush=True)


def ivf(n: int, lists: int) -> None:
    data, _, q = gap_vectors(n, 300, 512, n // 100, seed=1, noise=0.7)
    centroids = data[np.random.default_rng(0).choice(n, lists, replace=False)]
    truth = exact_topk(data, q, 10)
    for coarse in ("flat", "hnsw"):
        spec = f"IVF{lists}{'_HNSW32' if coarse == 'hnsw' else ''},RaBitQ,RFlat"
        index = faiss.index_factory(512, spec, faiss.METRIC_INNER_PRODUCT)
        inner = faiss.extract_index_ivf(index)
        faiss.downcast_index(inner.quantizer).add(centroids)  # trained: k-means is skipped
        inner.is_trained = True
        t = time.perf_counter()
        index.train(data[:20_000])
        index.add(data)
        print(f"{coarse}: built in {time.perf_counter() - t:.0f} s", flush=True)
        params = AnnParams(kind="ivf_rabitq_refine", n=n, dim=512, nlist=lists, coarse=coarse)
        for nprobe in (64, 256, 1024):
            for k_factor in (4, 16):
                ids = index.search(q, 10, params=search_parameters(params, nprobe=nprobe, k_factor=k_factor))[1]
                print(
                    f"{coarse} nprobe {nprobe} k_factor {k_factor}: recall@10 {recall_at_k(ids, truth):.3f}", flush=True
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["graph", "ivf"])
    ap.add_argument("--lists", type=int, default=16_000)
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    graph(args.lists) if args.what == "graph" else ivf(args.n, args.lists)


if __name__ == "__main__":
    main()
