"""The --scale case of benchmarks/search.py (issue 26, goal 2): an index over more vectors than memory holds.

Steps, each figure printed as it comes:
1. the case's vectors written to <work>/vectors/image.clip.npy chunk by chunk (never all in memory),
   with the tuning and test queries beside it, and the exact top-10 of the test queries (one pass);
2. the streamed build (store/ann_stream.py) from that file in a child process: time and peak RSS (VmHWM);
3. queries in a fresh child process: RSS after loading the index and after the queries, recall@10 on the
   test queries, single-query p50 CPU ms on one thread, batch-64 queries/s; re-ranking reads rows with
   pread from the build's vectors file and, for comparison, through a memory map.

With --ingest, steps 2-3 go through the product instead (bench_product): `avsearch index --embeddings` of
the case's vectors as pictures and its guiding and tuning queries as sounds, through a bridge that projects
both unchanged (identity_bridge), so the product's LanceDB tables, streamed builds from the table (routed by
the sounds) and re-ranking from the table's rows see the case itself: time, peak RSS, disk; then queries
as a query process makes them (Index.open(...).ann), and an update of MORE new pictures in place.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

DIM_NAME = "image.clip.npy"


def proc_status() -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of this process, in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) // 1024
    return out


class NpyChunks:
    """A ChunkSource over a float32 .npy file read with plain reads (not mapped: mapped pages would count
    in the build's RSS)."""

    def __init__(self, path: Path, rows: int = 65_536) -> None:
        self.path, self.rows = path, rows
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
            self.offset = f.tell()
        self.n, self.dim = shape

    def chunks(self):  # noqa: ANN201
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for s in range(0, self.n, self.rows):
                k = min(self.rows, self.n - s)
                yield np.fromfile(f, np.float32, k * self.dim).reshape(k, self.dim)


GUIDE = 5_000  # guiding rows written beside the case (a streamed build uses [ann] stream_guide_queries)


def write_case(work: Path, case: str, n: int, dim: int, m: int, seed: int) -> None:
    """The case's vectors into work/vectors/image.clip.npy (+ rows file), queries and truth beside."""
    from search import CASES, gap_chunks

    spec = CASES[case]
    folder = work / "vectors"
    folder.mkdir(parents=True, exist_ok=True)
    chunks, queries = gap_chunks(
        n,
        m,
        dim,
        max(100, n // 100),
        seed,
        float(spec["noise"]),
        str(spec["structure"]),
        float(spec.get("gap", 1.0)),
        twist=float(spec.get("twist", 0.0)),
    )
    path = folder / DIM_NAME
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)})
        for chunk in chunks:
            f.write(chunk.tobytes())
    # a guiding sample of the same kind of queries (the other modality's table), neither tuned nor measured on
    tune_q, test_q, guide_q = queries(GUIDE)
    np.save(work / "guide_q.npy", guide_q)
    np.save(work / "tune_q.npy", tune_q)
    np.save(work / "test_q.npy", test_q)
    np.save(work / "truth.npy", exact_topk_file(path, test_q, 10))


def exact_topk_file(path: Path, q: np.ndarray, k: int) -> np.ndarray:
    import faiss

    heap = faiss.ResultHeap(len(q), k, keep_max=True)
    start = 0
    for chunk in NpyChunks(path).chunks():
        scores, ids = faiss.knn(q, chunk, k, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, ids + start)
        start += len(chunk)
    heap.finalize()
    return heap.I


def _child_build(work: str, overrides: dict, out: mp.Queue) -> None:
    from dataclasses import replace

    from avsearch.store.ann_files import new_vectors_file, save_ann
    from avsearch.store.ann_stream import build_streamed
    from avsearch.store.config import load_search_config

    work_p = Path(work)
    cfg = replace(load_search_config().ann, **overrides)
    source = NpyChunks(work_p / "vectors" / DIM_NAME, cfg.stream_chunk_rows)
    index_dir = work_p / "ann_index"
    t = time.perf_counter()
    guide = np.load(work_p / "guide_q.npy") if (work_p / "guide_q.npy").is_file() else None
    index, params = build_streamed(
        source, cfg, new_vectors_file(index_dir, "bench"), np.load(work_p / "tune_q.npy"), "bench", guide=guide
    )
    build = time.perf_counter() - t
    save_ann(index_dir, "bench", index, params, [str(i) for i in range(source.n)], 0)
    out.put({"build_s": build, "params": params.__dict__, **proc_status()})


def _child_query(work: str, mode: str, out: mp.Queue) -> None:
    import faiss

    from avsearch.store.ann import recall_at_k
    from avsearch.store.ann_files import load_ann

    work_p = Path(work)
    test_q, truth = np.load(work_p / "test_q.npy"), np.load(work_p / "truth.npy")
    before = proc_status()
    ann = load_ann(work_p / "ann_index", "bench")
    loaded = proc_status()
    if mode == "mmap":  # rows read through the memory map instead of pread
        vf = ann.index.vectors
        vf.take = lambda rows: np.asarray(vf.matrix()[np.asarray(rows)], np.float32)
    got = recall_at_k(ann.index.search(test_q, 10)[1], truth)
    faiss.omp_set_num_threads(1)
    cpu = []
    for q in test_q[:300]:
        c = time.process_time()
        ann.index.search(q[None, :], 10)
        cpu.append((time.process_time() - c) * 1e3)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    for s in range(0, len(test_q), 64):
        ann.index.search(test_q[s : s + 64], 10)
    qps = len(test_q) / (time.perf_counter() - t)
    out.put(
        {
            "mode": mode,
            "recall": got,
            "p50_cpu_ms": float(np.percentile(cpu, 50)),
            "p99_cpu_ms": float(np.percentile(cpu, 99)),
            "qps64": qps,
            "rss_start_mb": before["VmRSS"],
            "rss_loaded_mb": loaded["VmRSS"],
            "after": proc_status(),
        }
    )


def _in_child(target, *args) -> dict:  # noqa: ANN001
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def _exact_p50(work: Path, rows: int = 1_000_000) -> tuple[float, int]:
    """Single-query p50 CPU ms of IndexFlatIP on one thread over the first `rows` vectors (the whole set
    may not fit memory; exact cost is linear in n)."""
    import faiss

    source = NpyChunks(work / "vectors" / DIM_NAME)
    flat = faiss.IndexFlatIP(source.dim)
    for chunk in source.chunks():
        flat.add(chunk[: rows - flat.ntotal])
        if flat.ntotal >= rows:
            break
    q = np.load(work / "test_q.npy")[:20]
    faiss.omp_set_num_threads(1)
    cpu = []
    for x in q:
        c = time.process_time()
        flat.search(x[None, :], 10)
        cpu.append((time.process_time() - c) * 1e3)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return float(np.percentile(cpu, 50)), int(flat.ntotal)


BRIDGE = "audio_visual"
PROJ = f"image.proj_{BRIDGE}"  # the index the cross-modal queries search (ann_files.ann_name)
MORE = 10_000  # rows an incremental update adds


def identity_bridge(path: Path) -> Path:
    """A C-MCR bridge of the released architecture (Linear-BN-ReLU, Linear-BN, no final ReLU) whose weights
    are set so both heads project a unit vector onto itself (x = relu(x) - relu(-x)): the case's vectors
    and queries reach the shared space unchanged, with the case's geometry. A benchmark fixture: it stands in
    for a trained bridge only so that the product's own path carries the case's vectors."""
    import torch

    from avsearch.bridge.heads import HeadSpec
    from avsearch.bridge.io import save_bridge
    from avsearch.bridge.model import Bridge, BridgeMeta, Side

    meta = BridgeMeta(
        name=BRIDGE,
        overlap="text",
        sides=(Side("clip", "clip-vit-b-32-openai", 512, "image"), Side("clap", "clap-630k-fusion", 512, "audio")),
        head=HeadSpec(kind="released_av", in_dim=512, hidden=1024, out_dim=512),
    )
    bridge = Bridge(meta)
    eye = torch.eye(512)
    with torch.no_grad():
        for head in bridge.heads.values():
            head.net1[0].weight.copy_(torch.cat([eye, -eye]))
            head.net1[0].bias.zero_()
            head.net2[0].weight.copy_(torch.cat([eye, -eye], 1))
            head.net2[0].bias.zero_()
    save_bridge(bridge, path)
    return path


def _run_cli(args: list[str]) -> dict:
    """An `avsearch` command: its time, peak RSS (VmHWM, polled each second) and output tail."""
    cmd = [str(Path(sys.executable).parent / "avsearch"), *args]
    peak = {"VmHWM": 0, "RssAnon": 0}  # RssAnon: without the page cache of files it maps (the input .npy)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def poll() -> None:
        while proc.poll() is None:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    key = line.partition(":")[0]
                    if key in peak:
                        peak[key] = max(peak[key], int(line.split()[1]) // 1024)
            except OSError:
                pass
            time.sleep(1.0)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    output, _ = proc.communicate()
    took = time.perf_counter() - t
    return {
        "rc": proc.returncode,
        "s": took,
        "peak_mb": peak["VmHWM"],
        "anon_mb": peak["RssAnon"],
        "tail": output[-2500:],
    }


def _disk_gb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e9


def _ingest(work: Path) -> dict:
    """`avsearch index --embeddings` of the vectors folder (the product's path: LanceDB tables, the bridge's
    projections, a streamed FAISS build per vector column): the case's vectors as pictures, the guiding and
    tuning queries as sounds (the test queries stay out), through the identity bridge."""
    audio = work / "vectors" / "audio.clap.npy"
    if not audio.is_file():
        np.save(audio, np.concatenate([np.load(work / "guide_q.npy"), np.load(work / "tune_q.npy")]))
    bridge = identity_bridge(work / "bridge.safetensors")
    args = ["index", "--embeddings", str(work / "vectors"), "--index-dir", str(work / "index"), "--bridge", str(bridge)]
    got = _run_cli(args)
    got["disk_gb"] = _disk_gb(work / "index")
    got["tables_gb"] = _disk_gb(work / "index" / "tables") if (work / "index" / "tables").is_dir() else 0.0
    return got


def _update(work: Path, n: int, dim: int) -> dict:
    """MORE new pictures (near copies of the first rows: in the case's distribution, no exact ties) through
    `avsearch index --embeddings` of a second folder: the indexes are updated in place, not rebuilt."""
    more = work / "more"
    more.mkdir(exist_ok=True)
    base = np.load(work / "vectors" / DIM_NAME, mmap_mode="r")
    rng = np.random.default_rng(7)
    new = np.asarray(base[:MORE], np.float32) + 0.05 * rng.standard_normal((MORE, dim)).astype(np.float32) / np.sqrt(
        dim
    )
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    np.save(more / DIM_NAME, new)
    # the test queries' exact top-10 over the n + MORE rows: the old truth merged with the new rows
    q, truth = np.load(work / "test_q.npy"), np.load(work / "truth.npy")
    old_scores = np.einsum(
        "qd,qkd->qk",
        q,
        np.asarray(base[np.sort(np.unique(truth))], np.float32)[np.searchsorted(np.sort(np.unique(truth)), truth)],
    )
    new_scores = q @ new.T
    scores = np.concatenate([old_scores, new_scores], axis=1)
    ids = np.concatenate([truth, np.broadcast_to(np.arange(n, n + MORE), (len(q), MORE))], axis=1)
    np.save(work / "truth_more.npy", np.take_along_axis(ids, np.argsort(-scores, axis=1)[:, :10], 1))
    got = _run_cli(["index", "--embeddings", str(more), "--index-dir", str(work / "index")])
    meta = json.loads((work / "index" / "ann" / f"{PROJ}.json").read_text())
    got["extra"] = {k: meta["params"]["extra"].get(k) for k in ("rows_changed_since_tuning", "rows_at_tuning")}
    got["n"] = meta["params"]["n"]
    return got


def _child_query_product(work: str, name: str, truth_name: str, cap: int, out: mp.Queue) -> None:
    """The product's index loaded as a query process loads it (Index.open(...).ann): RSS, recall@10 of the
    test queries as cross-modal queries, single-query CPU ms on one FAISS thread, batch-64 q/s."""
    import faiss

    from avsearch.store.ann import recall_at_k
    from avsearch.store.index import Index

    work_p = Path(work)
    test_q, truth = np.load(work_p / "test_q.npy")[:cap], np.load(work_p / truth_name)[:cap]
    before = proc_status()
    t = time.perf_counter()
    ann = Index.open(work_p / "index").ann(name, use_gpu=False)
    load_s = time.perf_counter() - t
    loaded = proc_status()
    base = len(np.load(work_p / "vectors" / DIM_NAME, mmap_mode="r"))
    # ids -> the case's rows: "<work>/vectors/image.clip.npy#i" is row i, "<work>/more/...#j" row base + j
    to_case = np.array(
        [-1 if not p else int(p.rpartition("#")[2]) + (base if "/more/" in p else 0) for p in ann.paths], np.int64
    )
    got_ids = ann.search(test_q, 10, cross_modal=True)[1]
    got = recall_at_k(np.where(got_ids >= 0, to_case[np.maximum(got_ids, 0)], -1), truth)
    faiss.omp_set_num_threads(1)
    cpu, wall = [], []
    for x in test_q[: min(cap, 300)]:
        c, w = time.process_time(), time.perf_counter()
        ann.search(x[None, :], 10, cross_modal=True)
        cpu.append((time.process_time() - c) * 1e3)
        wall.append((time.perf_counter() - w) * 1e3)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    for s in range(0, len(test_q), 64):
        ann.search(test_q[s : s + 64], 10, cross_modal=True)
    qps = len(test_q) / (time.perf_counter() - t)
    p = ann.params
    out.put(
        {
            "recall": got,
            "p50_cpu_ms": float(np.percentile(cpu, 50)),
            "p99_cpu_ms": float(np.percentile(cpu, 99)),
            "p50_wall_ms": float(np.percentile(wall, 50)),
            "qps64": qps,
            "load_s": load_s,
            "rss_start_mb": before["VmRSS"],
            "rss_loaded_mb": loaded["VmRSS"],
            "after": proc_status(),
            "params": f"{p.kind} nlist {p.nlist} nprobe {p.nprobe} k_factor {p.k_factor} n {p.n}",
            "queries": len(test_q),
        }
    )


def _print_query(label: str, r: dict, exact_ms: float) -> None:
    print(
        f"{label}: {r['params']}; {r['queries']} queries: recall@10 {r['recall']:.3f}, p50 {r['p50_cpu_ms']:.2f} ms "
        f"CPU (p99 {r['p99_cpu_ms']:.2f}; wall p50 {r['p50_wall_ms']:.2f}), {exact_ms / r['p50_cpu_ms']:.0f}x exact, "
        f"batch-64 {r['qps64']:.0f} q/s; loaded in {r['load_s']:.1f} s; RSS {r['rss_start_mb']} MB at start, "
        f"{r['rss_loaded_mb']} MB loaded, {r['after']['VmRSS']} MB after (anon {r['after']['RssAnon']}, "
        f"file {r['after']['RssFile']}), peak {r['after']['VmHWM']} MB",
        flush=True,
    )


def bench_product(work: Path, n: int, dim: int, exact_ms: float) -> None:
    """--ingest: the product's path end to end (ingest, streamed builds from the table, queries, an update)."""
    got = _ingest(work)
    sounds = len(np.load(work / "vectors" / "audio.clap.npy", mmap_mode="r"))
    print(
        f"avsearch index --embeddings ({n:,} pictures, {sounds:,} sounds): rc {got['rc']}, {got['s']:.0f} s, "
        f"peak RSS {got['peak_mb']} MB (anonymous {got['anon_mb']} MB), index folder {got['disk_gb']:.1f} GB "
        f"(tables {got['tables_gb']:.1f} GB)\n{got['tail']}",
        flush=True,
    )
    for name in (PROJ, "image.native"):
        meta = json.loads((work / "index" / "ann" / f"{name}.json").read_text())
        p = meta["params"]
        print(
            f"{name}: {json.dumps({k: p[k] for k in ('kind', 'nlist', 'nprobe', 'k_factor', 'heldout_recall')})}; "
            f"extra {json.dumps(p['extra'])[:600]}",
            flush=True,
        )
    _print_query(
        f"query {PROJ} (routed)", _in_child(_child_query_product, str(work), PROJ, "truth.npy", 1000), exact_ms
    )
    # the native column has no guide (captions never guide; no other modality shares CLIP): unrouted
    _print_query(
        "query image.native (unrouted)",
        _in_child(_child_query_product, str(work), "image.native", "truth.npy", 200),
        exact_ms,
    )
    up = _update(work, n, dim)
    print(
        f"update (+{MORE:,} pictures, avsearch index --embeddings): rc {up['rc']}, {up['s']:.0f} s, peak RSS "
        f"{up['peak_mb']} MB (anonymous {up['anon_mb']} MB); {PROJ} now n {up['n']:,}, {up['extra']}; "
        f"index folder {_disk_gb(work / 'index'):.1f} GB"
        f"\n{up['tail'][-1200:]}",
        flush=True,
    )
    _print_query(
        f"query {PROJ} after the update",
        _in_child(_child_query_product, str(work), PROJ, "truth_more.npy", 1000),
        exact_ms,
    )


def bench_scale(n: int, case: str, dim: int, m: int, work: Path, ingest: bool, keep: bool) -> None:
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if not (work / "truth.npy").is_file():
        write_case(work, case, n, dim, m, seed=n)
    print(
        f"\nscale case {case}: n={n:,} dim={dim}, vectors written and truth computed in "
        f"{time.perf_counter() - t:.0f} s ({n * dim * 4 / 1e9:.1f} GB file)",
        flush=True,
    )
    exact, over = _exact_p50(work)
    exact_n = exact * n / over
    print(
        f"exact IndexFlatIP p50 {exact:.1f} ms CPU over {over:,} rows -> {exact_n:.1f} ms at {n:,} (linear)", flush=True
    )
    if ingest:
        bench_product(work, n, dim, exact_n)
    else:
        shutil.rmtree(work / "ann_index", ignore_errors=True)
        got = _in_child(_child_build, str(work), {})
        p = got["params"]
        files = sum(f.stat().st_size for f in (work / "ann_index").rglob("*") if f.is_file())
        print(
            f"streamed build: {got['build_s']:.0f} s, peak RSS {got['VmHWM']} MB (end: anon {got['RssAnon']} "
            f"MB, file {got['RssFile']} MB); {p['kind']} nlist {p['nlist']} nprobe {p['nprobe']} "
            f"k_factor {p['k_factor']}, held-out recall {p['heldout_recall']:.3f}; ann/ {files / 1e9:.2f} GB; "
            f"route shift {p['extra'].get('spills', {}).get('route_shift', 'no guide')}, same-modality "
            f"{p['extra'].get('same_modality')}",
            flush=True,
        )
        for mode in ("pread", "mmap"):
            r = _in_child(_child_query, str(work), mode)
            print(
                f"query ({mode}): recall@10 {r['recall']:.3f}, p50 {r['p50_cpu_ms']:.2f} ms CPU "
                f"(p99 {r['p99_cpu_ms']:.2f}), {exact_n / r['p50_cpu_ms']:.0f}x exact, batch-64 "
                f"{r['qps64']:.0f} q/s; RSS {r['rss_start_mb']} MB at start, {r['rss_loaded_mb']} MB loaded, "
                f"{r['after']['VmRSS']} MB after (anon {r['after']['RssAnon']}, file {r['after']['RssFile']}), "
                f"peak {r['after']['VmHWM']} MB",
                flush=True,
            )
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


def parse_scale(text: str) -> int:
    text = text.lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "km" else text) * mult)


if __name__ == "__main__":
    print(json.dumps(proc_status()))
