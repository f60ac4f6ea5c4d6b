"""Search benchmarks: FAISS index choice, query latency and recall@10 against exact search for
cross-modal queries at 100k and 1M vectors, then end-to-end ingest speed (files/s) of `avsearch index`.

The vectors are synthetic with a modality gap: indexed vectors and queries share concept centres but
sit in two different cones, as CLIP image and text (or bridge-projected audio) embeddings do, so the
queries fall outside the data's clusters. The index is tuned on one set of such queries (as
`avsearch index` does) and measured on a fresh set.

    .venv/bin/python benchmarks/search.py                      # 100k and 1M, then ingest
    .venv/bin/python benchmarks/search.py --sizes 100000 --skip-ingest
    .venv/bin/python benchmarks/search.py --scale 10m --cases medium   # vectors on disk (search_scale.py)
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

import faiss  # noqa: E402

from avsearch.store import ann_spill  # noqa: E402
from avsearch.store.ann import AnnParams, choose_kind, recall_at_k  # noqa: E402
from avsearch.store.ann_build import build_index  # noqa: E402
from avsearch.store.config import load_search_config  # noqa: E402


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gap_vectors(
    n: int,
    m: int,
    dim: int,
    concepts: int,
    seed: int,
    noise: float = 1.0,
    structure: str = "clusters",
    gap: float = 1.0,
    sample: int = 0,
    twist: float = 0.0,
    own: int = 0,
) -> tuple[np.ndarray, ...]:
    """(data (n, dim), tuning queries (m, dim), test queries (m, dim)), float32 unit rows, made in chunks;
    with `sample`, also (sample, dim) more queries (a stand-in for the other modality's table); with `own`,
    last, (own, dim) fresh vectors of the data's own modality (same-modality queries).

    clusters: `concepts` centres, every vector one of them plus noise. lowrank: no clusters at all,
    content varies continuously in a 32-d subspace (the hard case for IVF). gap: how far the queries' cone
    is shifted from the content (1: as far as the data's; more: further away). twist: each concept's queries
    also move by an offset of their own, this long (the gap is then no constant shift).
    """
    data = np.empty((n, dim), np.float32)
    chunks, queries = gap_chunks(n, m, dim, concepts, seed, noise, structure, gap, twist=twist)
    s = 0
    for chunk in chunks:
        data[s : s + len(chunk)] = chunk
        s += len(chunk)
    return (data, *queries(sample), *((queries.own(own),) if own else ()))


def gap_chunks(
    n: int,
    m: int,
    dim: int,
    concepts: int,
    seed: int,
    noise: float = 1.0,
    structure: str = "clusters",
    gap: float = 1.0,
    rows: int = 100_000,
    twist: float = 0.0,
):  # noqa: ANN201
    """gap_vectors as (a generator of data chunks of `rows`, a function giving (tuning, test) queries once
    the chunks are consumed): the same vectors, never all of them in memory (the --scale case)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, 32)))[0].T.astype(np.float32)
    centres = _unit(rng.standard_normal((concepts, dim)).astype(np.float32))
    g_data, g_query = _unit(rng.standard_normal((2, dim)).astype(np.float32))
    # drawn only when asked, so the other cases' vectors stay the same
    offsets = twist * _unit(rng.standard_normal((concepts, dim)).astype(np.float32)) if twist else None

    def content(k: int, query: bool = False) -> np.ndarray:
        if structure == "lowrank":
            return _unit(rng.standard_normal((k, 32)).astype(np.float32) @ basis)
        which = rng.integers(concepts, size=k)
        return centres[which] + offsets[which] if query and offsets is not None else centres[which]

    def side(k: int, shift: np.ndarray) -> np.ndarray:
        jitter = rng.standard_normal((k, dim), dtype=np.float32) * (noise / np.sqrt(dim))
        return _unit(content(k, query=shift is not g_data) + shift + jitter)

    def chunks():  # noqa: ANN202
        for s in range(0, n, rows):
            yield side(min(n, s + rows) - s, g_data)

    def queries(sample: int = 0):  # noqa: ANN202
        # tuning, test, then (when asked) a sample of the other modality's table: the query distribution an
        # index may be built from (query-guided spilling, store/ann_spill.py), never the test queries
        tune_q, test_q = side(m, gap * g_query), side(m, gap * g_query)
        return (tune_q, test_q, side(sample, gap * g_query)) if sample else (tune_q, test_q)

    queries.own = lambda k: side(k, g_data)  # fresh vectors of the data's own modality (same-modality queries)

    return chunks(), queries


CASES = {
    # n/100 concepts, noise as large as the concept signal: a query's true top-10 are mostly its concept's
    # items but some are items whose noise happens to align (as near-duplicates and off-topic matches
    # do in real collections), spread over many IVF lists: the hard case (FAISS HNSW32 does not reach
    # recall 0.95 here).
    "hard": {"structure": "clusters", "noise": 1.0},
    # less noise: most of the top-10 are the concept's items, grouped in fewer lists
    "medium": {"structure": "clusters", "noise": 0.7},
    # the medium case's data, queries in a cone twice as far from the content (issue 26, goal 1): the
    # shift, not the concept, dominates each query, so its neighbours are harder to find from its lists
    "far": {"structure": "clusters", "noise": 0.7, "gap": 2.0},
    # the medium case with a modality gap that is no constant shift: each concept's queries also move by an
    # offset of their own, as long as the shift (a route shift learned from a query sample corrects only
    # the common part; store/ann_spill.py)
    "twisted": {"structure": "clusters", "noise": 0.7, "twist": 1.0},
}


def cross_modal_case(
    case: str, n: int, m: int, dim: int, seed: int, sample: int = 0, own: int = 0
) -> tuple[np.ndarray, ...]:
    """(data, tuning queries, test queries) of a named case: queries are cross-modal (another cone);
    with `sample`, a fourth array: that many more queries of the same kind (the other modality's table);
    with `own`, last, that many same-modality queries."""
    spec = CASES[case]
    concepts = max(100, n // 100) if spec["structure"] == "clusters" else n + 2 * m
    return gap_vectors(
        n,
        m,
        dim,
        concepts,
        seed,
        noise=float(spec["noise"]),
        structure=str(spec["structure"]),
        gap=float(spec.get("gap", 1.0)),
        sample=sample,
        twist=float(spec.get("twist", 0.0)),
        own=own,
    )


def index_bytes(index: faiss.Index) -> int:
    """Memory an index holds: codes and ids in the lists, full vectors kept for re-ranking, the coarse
    quantizer (with its graph links when it is HNSW)."""
    if isinstance(index, faiss.IndexFlat):
        return index.ntotal * index.d * 4
    if isinstance(index, ann_spill.SpillRefine):  # lists with the copies, plus the vectors re-ranked on
        return index_bytes(index.base) + index.vectors.nbytes
    total = index.ntotal * index.d * 4 if isinstance(faiss.downcast_index(index), faiss.IndexRefine) else 0
    ivf = faiss.extract_index_ivf(index)
    total += ivf.invlists.compute_ntotal() * (ivf.code_size + 8)
    q = faiss.downcast_index(ivf.quantizer)
    total += q.ntotal * q.d * 4
    if isinstance(q, faiss.IndexHNSW):
        total += q.hnsw.neighbors.size() * 4
    return total


def _latency(search, queries: np.ndarray, batch: int) -> tuple[float, float, float, float]:
    """(p50 CPU ms, p99 CPU ms, p50 wall ms) of search() on single queries, one thread, then queries/s
    in batches of `batch` on every thread.

    Single queries run on one FAISS thread (as a server answering one query per core does), so the CPU
    time of the process is the query's own cost: on a machine shared with other work, wall time also
    counts the time other processes held the core, CPU time does not. Speed-ups are ratios of CPU time.
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    cpu, wall = [], []
    try:
        for q in queries:
            c, t = time.process_time(), time.perf_counter()
            search(q[None, :])
            cpu.append((time.process_time() - c) * 1e3)
            wall.append((time.perf_counter() - t) * 1e3)
    finally:
        faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    for s in range(0, len(queries), batch):
        search(queries[s : s + batch])
    qps_batch = len(queries) / (time.perf_counter() - t)
    return float(np.percentile(cpu, 50)), float(np.percentile(cpu, 99)), float(np.percentile(wall, 50)), qps_batch


# The candidates of the table: config overrides over the bundled [ann] section (the product builds them).
CANDIDATES: dict[str, dict[str, object]] = {
    "IVF-Flat, 4 sqrt(n) lists": {"refined_codes": "none"},
    "IVF-SQ8 + re-rank, 4 sqrt(n) lists": {"refined_codes": "sq8", "hnsw_coarse_min_lists": 10**9},
    "IVF-RaBitQ + re-rank, 4 sqrt(n) lists": {"refined_codes": "rabitq", "hnsw_coarse_min_lists": 10**9},
    "IVF-RaBitQ + re-rank, 16 sqrt(n) lists, HNSW coarse": {
        "refined_codes": "rabitq",
        "lists_per_sqrt_n": 16.0,
        "hnsw_coarse_min_lists": 0,  # off in search.toml: without this the candidate had a flat coarse quantizer
    },
    # query-guided spilling (store/ann_spill.py): built from the query sample, not from the tuning queries
    "IVF-RaBitQ + re-rank + query-guided spills, 4 sqrt(n) lists": {"refined_codes": "rabitq", "spill": True},
}


def build_candidate(
    data: np.ndarray, cfg: object, overrides: dict[str, object], tune_q: np.ndarray, sample: np.ndarray
) -> tuple[object, AnnParams, str]:
    """(index, params, note) of one candidate, built as `avsearch index` builds it (ann_build.build_index);
    "spill" candidates get `sample` as their guiding sample (the other modality's table), so the build starts
    with the guided kind (store/ann_spill.py)."""
    from dataclasses import replace

    kcfg = replace(cfg, **{k: v for k, v in overrides.items() if k != "spill"})
    guide = sample if overrides.get("spill") else None
    index, params = build_index(data, kcfg, tune_q, "synthetic cross-modal (tuning set)", guide=guide)
    stats = params.extra.get("spills")
    if not stats:
        return index, params, ""
    ivf = faiss.extract_index_ivf(index.base)
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    return (
        index,
        params,
        (
            f" {params.kind}, sample {len(sample)}, route shift {'yes' if stats['route_shift'] else 'no'}, "
            f"{stats['spilled_rows']} rows spilled, {stats['copies']} copies, "
            f"list sizes mean {sizes.mean():.0f} max {sizes.max()}"
        ),
    )


def bench_table(
    n: int, dim: int, m: int, case: str, only: list[str] | None, sample: int | None = None, lists: float | None = None
) -> None:
    """One row per candidate: recall@10 on fresh cross-modal queries, latency, QPS, build time, memory."""
    from dataclasses import replace

    cfg = load_search_config().ann
    if lists:  # e.g. 1.26 at 100k: 2.5 concepts and 250 vectors a list, as 4 sqrt(n) lists at 1M
        cfg = replace(cfg, lists_per_sqrt_n=lists)
    default_kind = choose_kind(n, dim, cfg, gpu=False)
    t = time.perf_counter()
    data, tune_q, test_q, sample_q, own_q = cross_modal_case(
        case, n, m, dim, seed=n, sample=sample or max(1, n // 10), own=2 * m
    )
    own_test = own_q[m:]  # (the product tunes same-modality settings on indexed rows)
    gen = time.perf_counter() - t
    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    t = time.perf_counter()
    truth = flat.search(test_q, 10)[1]
    own_truth = flat.search(own_test, 10)[1]
    lat_queries = test_q[: min(len(test_q), 300)]
    exact = _latency(lambda q, f=flat: f.search(q, 10), lat_queries[:30], 64)
    print(
        f"\n{case} case: n={n:,} dim={dim}, {len(tune_q)} tuning and {len(test_q)} test queries (disjoint), "
        f"data made in {gen:.0f} s; faiss threads {faiss.omp_get_max_threads()}"
        f"{f'; every candidate at {lists} sqrt(n) lists (--lists)' if lists else ''}\n"
        f"exact (IndexFlatIP): p50 {exact[0]:.1f} ms CPU ({exact[2]:.1f} ms wall), p99 {exact[1]:.1f} ms CPU, "
        f"batch-64 {exact[3]:.1f} q/s, "
        f"{n * dim * 4 / 1e9:.2f} GB (truth for {len(test_q)} queries in {time.perf_counter() - t:.0f} s)",
        flush=True,
    )
    del flat  # the product's tuning makes its own exact index: two at once would double the memory
    header = (
        f"{'index':<52} | {'recall@10':>9} | {'p50 CPU':>7} | {'p99 CPU':>7} | {'x exact':>7} | {'wall ms':>7} | "
        f"{'q/s b64':>7} | {'build s':>7} | {'GB':>5} | setting"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    for label, overrides in CANDIDATES.items():
        if only and not any(o in label for o in only):
            continue
        t = time.perf_counter()
        index, params, note = build_candidate(data, cfg, overrides, tune_q, sample_q)
        build = time.perf_counter() - t
        got = recall_at_k(index.search(test_q, 10)[1], truth)
        p50, p99, wall, qps64 = _latency(lambda q, ix=index: ix.search(q, 10), lat_queries, 64)
        same = params.kind == default_kind and all(getattr(cfg, k, None) == v for k, v in overrides.items())
        mark = " (default)" if same else ""
        setting = f"nlist {params.nlist} nprobe {params.nprobe}" + (
            f" k_factor {params.k_factor}" if params.k_factor else ""
        )
        print(
            f"{label + mark:<52} | {got:>9.3f} | {p50:>7.2f} | {p99:>7.2f} | {exact[0] / p50:>6.0f}x | "
            f"{wall:>7.2f} | {qps64:>7.0f} | {build:>7.0f} | {index_bytes(index) / 1e9:>5.2f} | {setting}{note}",
            flush=True,
        )
        own_search, own_setting = _same_modality(index, params)
        own_got = recall_at_k(own_search(own_test, 10)[1], own_truth)
        o50, o99, _, oqps = _latency(lambda q, f=own_search: f(q, 10), own_test[: len(lat_queries)], 64)
        print(
            f"{'  same-modality queries, ' + own_setting:<52} | {own_got:>9.3f} | {o50:>7.2f} | {o99:>7.2f} | "
            f"{exact[0] / o50:>6.0f}x | {'':>7} | {oqps:>7.0f} |",
            flush=True,
        )
        del index


def _same_modality(index: object, params: AnnParams) -> tuple[object, str]:
    """(search(x, k), label) for same-modality queries: the settings the build tuned for them
    (params.extra["same_modality"]), without the route shift, as LoadedAnn.search(cross_modal=False) does."""
    from avsearch.store.ann_disk import DiskRefine
    from avsearch.store.ann_search import search_parameters

    own = params.extra.get("same_modality")
    if not own:
        return index.search, "cross-modal settings"
    p = search_parameters(params, nprobe=int(own["nprobe"]), k_factor=int(own["k_factor"]) or None)

    def search(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(index, DiskRefine):
            return index.search(x, k, params=p, cross_modal=False)
        return index.search(x, k, params=p)

    return search, f"own nprobe {own['nprobe']} k_factor {own['k_factor']}"


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
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--cases", nargs="*", default=["hard"], choices=sorted(CASES))
    ap.add_argument("--only", nargs="*", default=None, help="candidates whose label holds one of these words")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000, help="tuning queries, and as many fresh test queries")
    ap.add_argument("--sample", type=int, default=None, help="query sample for spilled indexes (default n / 10)")
    ap.add_argument("--lists", type=float, default=None, help="lists_per_sqrt_n of every candidate (default: config)")
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--audio", type=int, default=16)
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--bridge", type=Path, default=None)
    ap.add_argument("--scale", default=None, help="e.g. 10m: the vectors-on-disk case (benchmarks/search_scale.py)")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/avsearch-scale"), help="--scale: files go here")
    ap.add_argument("--ingest", action="store_true", help="--scale: through `avsearch index --embeddings`")
    ap.add_argument("--keep", action="store_true", help="--scale: keep the work folder (vectors, index)")
    args = ap.parse_args()
    if args.scale:
        from search_scale import bench_scale, parse_scale

        n = parse_scale(args.scale)
        for case in args.cases:
            bench_scale(n, case, args.dim, args.queries, args.work_dir / f"{case}-{n}", args.ingest, args.keep)
        return
    print(f"faiss {faiss.__version__}, GPUs: {faiss.get_num_gpus()}, threads: {faiss.omp_get_max_threads()}")
    for case in args.cases:
        for n in args.sizes:
            bench_table(n, args.dim, args.queries, case, args.only, args.sample, args.lists)
    if not args.skip_ingest:
        bench_ingest(args.images, args.audio, args.weights_dir, args.bridge)


if __name__ == "__main__":
    main()
