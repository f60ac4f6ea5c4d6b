"""Bridge benchmark: training throughput and exact vs approximate semantic consistency.

    python benchmarks/bridge.py [--sizes 10000 100000 1000000] [--queries 2048] [--pairs 100000]

Prints (1) training throughput in overlap pairs per second at the paper's batch size, and (2) for each
memory size, the time of the exact chunked consistency (eq. 2) and of the FAISS top-k approximation
(index build and search separately) with the approximation's largest deviation from exact. Data comes
from avsearch.bridge.synthetic: text queries against an image memory, a cross-modal query set.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.consistency import build_memory_index, pseudo_embeddings
from avsearch.bridge.data import BridgeData
from avsearch.bridge.synthetic import SyntheticSpec, make_synthetic
from avsearch.bridge.train import train_bridge
from avsearch.device import pick_device

PAPER_TEXTS = 2_330_000  # captions the paper's audio-visual bridge trains on


def bench_training(pairs: int, batch_size: int, epochs: int) -> None:
    data = make_synthetic(SyntheticSpec(n_text=pairs, n_memory=min(pairs, 50_000), n_test=1))
    cfg = with_overrides(load_train_config("audio_visual"), epochs=epochs, batch_size=batch_size)
    bundle = BridgeData((data.text_a, data.text_b), (data.image_a, data.audio_b), fingerprint="synthetic")
    result = train_bridge(cfg, bundle, progress=False)
    steps = result.bridge.meta.metrics["steps"]
    print(
        f"training: {result.samples_per_s:,.0f} pairs/s ({pairs:,} pairs x {epochs} epochs, batch {batch_size}, "
        f"{steps} steps, table-6 heads, {result.bridge.meta.metrics['device']})"
    )


def bench_consistency(sizes: list[int], n_queries: int, topk: int, nprobe: int) -> None:
    device = pick_device()
    print(f"\nconsistency (eq. 2, tau1 = 0.01), {n_queries:,} text queries vs image memory, dim 512, {device}")
    print(f"(last two columns: extrapolated to the paper's {PAPER_TEXTS:,} captions = exact per-query time x N, and")
    print(" faiss build + per-query search time x N: exact and search grow with N, the build does not)")
    header = f"{'memory':>9} | {'exact s':>8} | {'faiss build s':>13} | {'faiss search s':>14} | "
    print(
        header + f"{'max |diff|':>10} | {'max row L2':>10} | {'min cos':>8} | {'exact@2.33M':>11} | {'faiss@2.33M':>11}"
    )
    for size in sizes:
        data = make_synthetic(SyntheticSpec(n_text=n_queries, n_memory=size, n_test=1, seed=size))
        queries, memory = data.text_a, data.image_a
        del data
        t0 = time.perf_counter()
        exact = pseudo_embeddings(queries, memory, 0.01, device=device)
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = build_memory_index(memory, nprobe=nprobe)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        approx = pseudo_embeddings(queries, memory, 0.01, backend="faiss", topk=topk, index=index)
        t_search = time.perf_counter() - t0
        diff = np.abs(exact - approx)
        cos = np.sum(exact * approx, 1) / (np.linalg.norm(exact, axis=1) * np.linalg.norm(approx, axis=1))
        scale = PAPER_TEXTS / n_queries
        print(
            f"{size:>9,} | {t_exact:>8.2f} | {t_build:>13.2f} | {t_search:>14.2f} | "
            f"{diff.max():>10.2e} | {np.linalg.norm(exact - approx, axis=1).max():>10.2e} | {cos.min():>8.5f} | "
            f"{_duration(t_exact * scale):>11} | {_duration(t_build + t_search * scale):>11}"
        )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2048)
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--nprobe", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10240)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    bench_training(args.pairs, args.batch_size, args.epochs)
    bench_consistency(args.sizes, args.queries, args.topk, args.nprobe)


if __name__ == "__main__":
    main()
