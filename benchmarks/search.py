"""Search benchmarks: FAISS index choice, query latency and recall@10 against exact search for
cross-modal queries at 100k and 1M vectors, then end-to-end ingest speed (files/s) of `avsearch index`.

The vectors are synthetic with a modality gap: indexed vectors and queries share concept centres but
sit in two different cones, as CLIP image and text (or bridge-projected audio) embeddings do, so the
queries fall outside the data's clusters. The index is tuned on one set of such queries (as
`avsearch index` does) and measured on a fresh set.

    .venv/bin/python benchmarks/search.py                      # 100k and 1M, then ingest
    .venv/bin/python benchmarks/search.py --sizes 100000 --skip-ingest
Ingest uses the real CLIP/CLAP architectures; without --weights-dir it makes random weights the way
the tests do (same compute as the published weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers for the ingest part

from avsearch.store.ann import build_index, exact_topk, recall_at_k  # noqa: E402
from avsearch.store.config import load_search_config  # noqa: E402


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gap_vectors(
    n: int, m: int, dim: int, concepts: int, seed: int, noise: float = 1.0, structure: str = "clusters"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data (n, dim), tuning queries (m, dim), test queries (m, dim)), float32 unit rows, made in chunks.

    clusters: `concepts` centres, every vector one of them plus noise. lowrank: no clusters at all,
    content varies continuously in a 32-d subspace (the hard case for IVF).
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, 32)))[0].T.astype(np.float32)
    centres = _unit(rng.standard_normal((concepts, dim)).astype(np.float32))
    g_data, g_query = _unit(rng.standard_normal((2, dim)).astype(np.float32))

    def content(k: int) -> np.ndarray:
        if structure == "lowrank":
            return _unit(rng.standard_normal((k, 32)).astype(np.float32) @ basis)
        return centres[rng.integers(concepts, size=k)]

    def side(k: int, gap: np.ndarray) -> np.ndarray:
        jitter = rng.standard_normal((k, dim), dtype=np.float32) * (noise / np.sqrt(dim))
        return _unit(content(k) + gap + jitter)

    data = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        data[s : min(n, s + 100_000)] = side(min(n, s + 100_000) - s, g_data)
    return data, side(m, g_query), side(m, g_query)


def bench_ann(n: int, dim: int, m: int, noise: float, structure: str) -> None:
    cfg = load_search_config().ann
    t = time.perf_counter()
    data, tune_q, test_q = gap_vectors(
        n,
        m,
        dim,
        concepts=max(100, n // 100) if structure == "clusters" else n + 2 * m,
        seed=n,
        noise=noise,
        structure=structure,
    )
    gen = time.perf_counter() - t
    t = time.perf_counter()
    index, params = build_index(data, cfg, tune_q, "synthetic cross-modal")
    build = time.perf_counter() - t
    truth = exact_topk(data, test_q, 10)
    approx = index.search(test_q, 10)[1]
    lat = []
    for q in test_q[:300]:
        t = time.perf_counter()
        index.search(q[None, :], 10)
        lat.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    index.search(test_q, 10)
    batch = (time.perf_counter() - t) / len(test_q) * 1e3
    import faiss

    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    exact_lat = []
    for q in test_q[:30]:
        t = time.perf_counter()
        flat.search(q[None, :], 10)
        exact_lat.append((time.perf_counter() - t) * 1e3)
    print(
        f"n={n:>9,} dim={dim} {structure} noise={noise} kind={params.kind} nlist={params.nlist} nprobe={params.nprobe} "
        f"| recall@10 vs exact (fresh cross-modal queries) {recall_at_k(approx, truth):.3f} "
        f"(tuning {params.tuned_recall:.3f}, held-out {params.heldout_recall:.3f}) "
        f"| latency p50 {np.percentile(lat, 50):.2f} ms p95 {np.percentile(lat, 95):.2f} ms, "
        f"batched {batch:.3f} ms/query | exact p50 {np.percentile(exact_lat, 50):.1f} ms "
        f"| build {build:.1f} s (data gen {gen:.1f} s)",
        flush=True,
    )


def bench_ingest(images: int, audio: int, weights_dir: Path | None, bridge: Path | None) -> None:
    from avsearch.indexing.pipeline import index_folder
    from tests.search.conftest import make_bridge
    from tests.search.media_factory import write_audio, write_image
    from tests.weights_factory import make_av_weights

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if weights_dir is None:
            weights_dir = make_av_weights(tmp_path / "weights")
        if bridge is None:
            bridge = make_bridge(tmp_path / "bridge.safetensors")
        root = tmp_path / "media"
        for i in range(images):
            write_image(root / "pics" / f"{i}.jpg", i, size=256)
        for i in range(audio):
            write_audio(root / "snd" / f"{i}.wav", i, seconds=5.0, rate=44100)
        # warm-up: load the models once so the figure is throughput, not start-up
        write_image(tmp_path / "warm" / "w.png", 0)
        write_audio(tmp_path / "warm" / "w.wav", 0)
        index_folder(tmp_path / "warm", tmp_path / "warm_index", bridge, weights_dir, "cpu")
        t = time.perf_counter()
        s = index_folder(root, tmp_path / "index", bridge, weights_dir, "cpu")
        first = time.perf_counter() - t
        t = time.perf_counter()
        s2 = index_folder(root, tmp_path / "index", bridge, weights_dir, "cpu")
        again = time.perf_counter() - t
    print(
        f"ingest {images} images (256 px) + {audio} clips (5 s): {s.added} files in {first:.1f} s = "
        f"{s.added / first:.2f} files/s | unchanged re-run: {s2.unchanged} files in {again:.2f} s = "
        f"{s2.unchanged / again:.0f} files/s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=1.0, help="spread around concept centres (norm)")
    ap.add_argument(
        "--structure",
        choices=["clusters", "lowrank"],
        default="clusters",
        help="clusters: n/100 concepts; lowrank: every vector its own point of a 32-d subspace",
    )
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--audio", type=int, default=16)
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--bridge", type=Path, default=None)
    args = ap.parse_args()
    import faiss

    print(f"faiss {faiss.__version__}, GPUs: {faiss.get_num_gpus()}, threads: {faiss.omp_get_max_threads()}")
    for n in args.sizes:
        bench_ann(n, args.dim, args.queries, args.noise, args.structure)
    if not args.skip_ingest:
        bench_ingest(args.images, args.audio, args.weights_dir, args.bridge)


if __name__ == "__main__":
    main()
