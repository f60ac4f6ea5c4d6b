"""The HNSW coarse quantizer's suspects (issue 26, goal 3), each measured apart from a full 1M build.

    .venv/bin/python benchmarks/hnsw_coarse.py graph --lists 16000       # does the graph find the lists?
    .venv/bin/python benchmarks/hnsw_coarse.py ivf --n 100000 --lists 8000   # RaBitQ behind it vs flat
    .venv/bin/python benchmarks/hnsw_coarse.py filing --n 200000 --lists 3200  # the cause (store/ann_coarse.py)
    .venv/bin/python benchmarks/hnsw_coarse.py build --n 300000   # the product's builds, HNSW vs flat coarse

filing (the cause of recall 0.07 at 1M): k-means centroids of the medium case (n/100 concepts, a training
sample of 12.5 points a list, as 200k of 1M over 16,000 lists), an HNSW32 graph over them as
index_factory's IVF<n>_HNSW32 builds it, and how often the graph at efSearch 16 (FAISS's default, which
IndexIVF.add used to file vectors) and wider returns a vector's nearest centroid, and the score it loses.
build: benchmarks/search.py's medium case through build_index, the flat-coarse default (4 sqrt(n) lists)
and the HNSW-coarse config (16 sqrt(n) lists): recall@10 on held-out cross-modal queries, CPU p50.

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

from search import _latency, cross_modal_case, gap_vectors  # noqa: E402

from avsearch.store.ann import AnnParams, exact_topk, recall_at_k  # noqa: E402
from avsearch.store.ann_build import build_index  # noqa: E402
from avsearch.store.ann_search import search_parameters  # noqa: E402
from avsearch.store.config import load_search_config  # noqa: E402


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


def filing(n: int, lists: int) -> None:
    data = cross_modal_case("medium", n, 10, 512, seed=n)[0]
    train = data[np.sort(np.random.default_rng(0).choice(n, round(12.5 * lists), replace=False))]
    t = time.perf_counter()
    km = faiss.Clustering(512, lists)
    km.spherical, km.niter, km.min_points_per_centroid, km.seed = True, 10, 5, 0  # as ann_train.empty_index
    km.train(train, faiss.IndexFlatIP(512))
    centroids = faiss.vector_to_array(km.centroids).reshape(lists, 512)
    flat = faiss.IndexFlatIP(512)
    flat.add(centroids)
    graph = faiss.IndexHNSWFlat(512, 32, faiss.METRIC_INNER_PRODUCT)
    graph.add(centroids)
    x = data[:20_000]
    best, nearest = flat.search(x, 1)
    print(f"{n} vectors, {n // 100} concepts, {lists} lists: k-means and graph in {time.perf_counter() - t:.0f} s")
    for ef in (16, 64, 256):
        graph.hnsw.efSearch = ef
        got, found = graph.search(x, 1)
        lost = (best - got)[:, 0]
        print(
            f"efSearch {ef:3d}: nearest centroid found for {np.mean(found == nearest):.3f} of the vectors; "
            f"score lost: median {np.median(lost):.3f}, p90 {np.percentile(lost, 90):.3f}",
            flush=True,
        )


def build(n: int) -> None:
    from dataclasses import replace

    data, tune_q, test_q = cross_modal_case("medium", n, 1000, 512, seed=n)[:3]
    truth = exact_topk(data, test_q, 10)
    cfg = load_search_config().ann
    for label, over in (
        ("flat coarse, 4 sqrt(n) lists (default)", {"hnsw_coarse_min_lists": 10**9}),
        ("HNSW coarse, 16 sqrt(n) lists", {"hnsw_coarse_min_lists": 0, "lists_per_sqrt_n": 16.0}),
    ):
        t = time.perf_counter()
        index, p = build_index(data, replace(cfg, **over), tune_q, "synthetic cross-modal (tuning set)")
        took = time.perf_counter() - t
        got = recall_at_k(index.search(test_q, 10)[1], truth)
        p50, p99, _, qps = _latency(lambda q, ix=index: ix.search(q, 10), test_q[:300], 64)
        print(
            f"{label}: recall@10 {got:.3f}, p50 {p50:.2f} ms CPU, p99 {p99:.2f}, batch-64 {qps:.0f} q/s, "
            f"build {took:.0f} s; nlist {p.nlist} nprobe {p.nprobe} k_factor {p.k_factor} "
            f"(held out {p.heldout_recall:.3f})",
            flush=True,
        )
        del index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["graph", "ivf", "filing", "build"])
    ap.add_argument("--lists", type=int, default=16_000)
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    {
        "graph": lambda: graph(args.lists),
        "ivf": lambda: ivf(args.n, args.lists),
        "filing": lambda: filing(args.n, args.lists),
        "build": lambda: build(args.n),
    }[args.what]()


if __name__ == "__main__":
    main()
