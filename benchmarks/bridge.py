"""Bridge benchmark: training throughput, and exact vs approximate semantic consistency (eq. 2).

    python benchmarks/bridge.py [--sizes 10000 100000 1000000] [--queries 1024] [--batch 65536] [--pairs 100000]

(1) Training throughput in overlap pairs per second at the paper's batch size (--pairs 0 skips it).
(2) For each memory size: the exact backend's time per query, the approximate backend's index build,
probe-budget tuning and time per query, their ratio, and the approximation's deviation (min and mean
cosine to exact). The data is structured like CLIP embeddings (avsearch.bridge.synthetic's space A:
1,000 concept clusters, texts vs an image memory with a modality gap, 70% of the concepts in memory):
caption queries against a memory of another modality in the same space. The probe budget is tuned on
256 queries that are not measured; the deviation is measured on --queries others. The approximate
backend runs in batches of --batch queries, as in a training pass (its time per query depends on
that batch; the measured queries are the batch's first rows).
(3) The projected wall time of a full paper-size consistency pass (2.33M captions against the 1.8M
audio memory and against the 1.3M image memory) on this machine, from the largest size measured:
exact and approximate search time scaled linearly in captions and memory rows (the same share of
lists probed), the build as memory^1.5 (k-means lists grow as sqrt(memory)).
Also printed: the exact softmax weight outside each query's top 64 memory rows at tau1 = 0.01, the
reason the approximation keeps whole lists instead of a top-k.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.consistency import pseudo_embeddings, row_cosine, tune_nprobe
from avsearch.bridge.data import BridgeData
from avsearch.bridge.memory_index import build_clustered_memory
from avsearch.bridge.synthetic import SyntheticSpec, _Space, make_synthetic
from avsearch.bridge.train import train_bridge

PAPER_TEXTS = 2_330_000  # captions of the paper's audio-visual bridge
PAPER_MEMORIES = {"audio": 1_800_000, "image": 1_300_000}  # AudioSet clips, ImageNet train images
TAU1 = 0.01
TUNE = 256  # queries the probe budget is tuned on (never measured)


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


def structured(n_queries: int, n_memory: int, seed: int, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Texts (n_queries, 512) and an image memory (n_memory, 512) of synthetic space A, as
    make_synthetic draws them, but the memory in chunks: make_synthetic's float64 temporaries
    at 1M rows would take ~16 GB."""
    spec = SyntheticSpec(seed=seed)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((spec.concepts, spec.latent))
    space = _Space(rng, spec.latent, spec.dim, ("text", "image"), spec)
    held = rng.permutation(spec.concepts)[: round(spec.coverage * spec.concepts)]

    def events(concepts: np.ndarray, n: int, detail: float) -> np.ndarray:
        return centres[rng.choice(concepts, n)] + detail * rng.standard_normal((n, spec.latent))

    texts = space.embed("text", events(np.arange(spec.concepts), n_queries, spec.text_detail), None)
    memory = np.empty((n_memory, spec.dim), np.float32)
    for s in range(0, n_memory, chunk):
        n = min(chunk, n_memory - s)
        memory[s : s + n] = space.embed("image", events(held, n, spec.detail), rng.standard_normal((n, spec.latent)))
    return texts, memory


def mass_outside_topk(queries: np.ndarray, memory: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Exact softmax weight (tau1) outside each query's k most similar memory rows."""
    q = torch.from_numpy(queries)
    logits = torch.cat([q @ torch.from_numpy(memory[s : s + chunk]).T for s in range(0, len(memory), chunk)], 1)
    weights = torch.softmax(logits / TAU1, dim=1)
    return (1 - weights.topk(k, dim=1).values.sum(dim=1)).numpy()


def bench_consistency(sizes: list[int], n_queries: int, batch: int) -> dict[str, float]:
    print(f"\nconsistency (eq. 2, tau1 = {TAU1}), caption queries vs image memory, dim 512, cpu")
    print(f"exact: {n_queries:,} queries; approx: {batch:,} queries in one batch, deviation on the same {n_queries:,}")
    head = (
        f"{'memory':>9} | {'exact ms/q':>10} | {'lists':>5} | {'build s':>7} | {'tune s':>6} | {'nprobe':>6} | "
        f"{'approx ms/q':>11} | {'ratio':>5} | {'mean cos':>8} | {'min cos':>7} | {'w out top64':>11}"
    )
    print(head + "\n" + "-" * len(head))
    last: dict[str, float] = {}
    for size in sizes:
        texts, memory = structured(TUNE + batch, size, seed=size)
        tune, queries = texts[:TUNE], texts[TUNE:]
        t0 = time.perf_counter()
        exact = pseudo_embeddings(queries[:n_queries], memory, TAU1)
        exact_q = (time.perf_counter() - t0) / n_queries
        index = build_clustered_memory(memory)
        t0 = time.perf_counter()
        nprobe = tune_nprobe(tune, memory, index, TAU1, target=0.999)
        tune_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        approx = pseudo_embeddings(queries, memory, TAU1, backend="approx", index=index, nprobe=nprobe)
        approx_q = (time.perf_counter() - t0) / len(queries)
        cos = row_cosine(exact, approx[:n_queries])
        outside = mass_outside_topk(queries[: min(256, n_queries)], memory, 64)
        print(
            f"{size:>9,} | {exact_q * 1e3:>10.2f} | {index.nlist:>5} | {index.build_s:>7.1f} | {tune_s:>6.1f} | "
            f"{nprobe:>6} | {approx_q * 1e3:>11.3f} | {exact_q / approx_q:>5.1f} | {cos.mean():>8.5f} | "
            f"{cos.min():>7.4f} | {outside.mean():>5.3f}/{outside.max():>5.3f}"
        )
        last = {"size": size, "exact_q": exact_q, "approx_q": approx_q, "build": index.build_s, "tune": tune_s}
        last |= {"mean": float(cos.mean()), "min": float(cos.min()), "nprobe": nprobe, "nlist": index.nlist}
    print("(w out top64: mean/max exact weight outside a query's top 64 rows, on up to 256 measured queries)")
    return last


def project(m: dict[str, float]) -> None:
    """A full paper-size pass from the largest size measured (see the module docstring for the scaling)."""
    size = m["size"]
    print(
        f"\nprojected full paper-size pass on this machine, from {size:,.0f} rows measured (nprobe {m['nprobe']:.0f})"
    )
    print(f"{'pass':<37} | {'exact':>9} | {'approx':>9} | {'speed-up':>8}")
    totals = [0.0, 0.0]
    for name, rows in PAPER_MEMORIES.items():
        scale = rows / size
        exact = PAPER_TEXTS * m["exact_q"] * scale
        approx = PAPER_TEXTS * m["approx_q"] * scale + (m["build"] + m["tune"]) * scale**1.5
        totals = [totals[0] + exact, totals[1] + approx]
        label = f"{PAPER_TEXTS:,} captions x {rows:,} {name}"
        print(f"{label:<37} | {_hours(exact):>9} | {_hours(approx):>9} | {exact / approx:>7.1f}x")
    print(f"{'both memories':<37} | {_hours(totals[0]):>9} | {_hours(totals[1]):>9} | {totals[0] / totals[1]:>7.1f}x")
    print(f"deviation measured at {size:,.0f} rows: mean cosine to exact {m['mean']:.5f}, min {m['min']:.4f}")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1024, help="queries timed on exact and measured")
    parser.add_argument("--batch", type=int, default=65536, help="queries in the approximate pass")
    parser.add_argument("--pairs", type=int, default=100_000, help="training pairs (0: skip the training figure)")
    parser.add_argument("--batch-size", type=int, default=10240)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    if args.pairs:
        bench_training(args.pairs, args.batch_size, args.epochs)
    project(bench_consistency(args.sizes, args.queries, args.batch))


if __name__ == "__main__":
    main()
