"""Query latency over moment rows against the same number of whole-file rows (issue 27), in one run.

--rows 512-d unit vectors (as CLIP frames of videos: a random walk along each video of --per-file frames,
so neighbouring frames are near and merge into moments, as in a real video) are written once as
image.clip.npy and indexed twice with `avsearch index --embeddings` (the product's path: LanceDB table,
bridge projections, FAISS index per column):
- moments: rows.jsonl gives each row a video and a 1 s range (start, end), as `avsearch index` writes the
  frames of --per-file-second videos;
- whole files: the same vectors, each row a file of its own.
Then, in this process, --queries single queries (a stored-like vector plus noise, picture -> pictures in
CLIP's space) through SearchEngine._run, what `avsearch query` runs once the query is embedded: FAISS,
the row lookup, and for moments merge_hits over rows_wanted(k) rows. Printed per index: its ANN kind,
p50 and p90 wall ms, p50 CPU ms (this thread), and p50 of merge_hits alone; the load average.

Usage: .venv/bin/python benchmarks/moment_latency.py [--rows 100000] [--per-file 600] [--queries 200] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 512


def walks(n: int, per_file: int, seed: int) -> np.ndarray:
    """n unit vectors: per_file-long random walks (a video's frames drift; a new video starts elsewhere)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, per_file):
        m = min(per_file, n - start)
        steps = 0.08 * rng.standard_normal((m, DIM)).astype(np.float32)
        steps[0] = rng.standard_normal(DIM)
        x = np.cumsum(steps, axis=0)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def write_folders(work: Path, n: int, per_file: int) -> None:
    vectors = walks(n, per_file, seed=0)
    for kind in ("moments", "files"):
        folder = work / kind
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "image.clip.npy", vectors)
        with open(folder / "image.clip.rows.jsonl", "w", encoding="utf-8") as rows:
            for i in range(n):
                if kind == "moments":
                    t = float(i % per_file)
                    row = {"source": f"/media/video{i // per_file:05d}.mp4", "start": t, "end": t + 1.0}
                else:
                    row = {"source": f"/media/picture{i:07d}.jpg"}
                rows.write(json.dumps(row) + "\n")
    np.save(work / "queries.npy", vectors)  # queries are drawn from these, with noise


def ingest(work: Path, kind: str, bridge: Path) -> float:
    cmd = [str(Path(sys.executable).parent / "avsearch"), "index", "--embeddings", str(work / kind)]
    cmd += ["--index-dir", str(work / f"index-{kind}"), "--bridge", str(bridge), "-q"]
    from tests.weights_factory import make_av_weights

    # a FAISS index over this many rows is tuned on captions through the text towers (random weights here)
    env = {**os.environ, "AVSEARCH_WEIGHTS": str(make_av_weights(work / "weights"))}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: rc {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def latency(index_dir: Path, queries: np.ndarray, k: int) -> dict[str, float | str]:
    import avsearch.search.engine as engine_module
    from avsearch.search.engine import SearchEngine
    from avsearch.search.planner import plan_routes
    from avsearch.store.index import Index

    engine = SearchEngine(Index.open(index_dir, device="cpu"))
    (route,) = plan_routes("image", "image", engine.manifest, "cmcr")
    merge = engine_module.merge_hits
    merged: list[float] = []

    def timed_merge(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        out = merge(*args, **kwargs)
        merged.append(time.perf_counter() - start)
        return out

    engine_module.merge_hits = timed_merge
    try:
        engine._run(route, "warm-up", "image", queries[:1], k, None)  # loads the FAISS index
        merged.clear()
        walls, cpus, kind = [], [], ""
        for q in queries:
            wall, cpu = time.perf_counter(), time.thread_time()
            result = engine._run(route, "q", "image", q[None, :], k, None)
            cpus.append(time.thread_time() - cpu)
            walls.append(time.perf_counter() - wall)
            kind = result.index_kind
    finally:
        engine_module.merge_hits = merge
    ms = lambda values, p: 1000 * float(np.percentile(values, p))  # noqa: E731
    return {"ann": kind, "p50": ms(walls, 50), "p90": ms(walls, 90), "cpu50": ms(cpus, 50), "merge50": ms(merged, 50)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=600, help="frames per video (600: 10 min at 1 fps)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None, help="kept when given (reused on a second run)")
    args = parser.parse_args()
    from tests.search.conftest import make_bridge

    work = args.work or Path(tempfile.mkdtemp(prefix="moment-latency-"))
    try:
        print(f"{args.rows:,} rows x {DIM}; {args.per_file} frames a video; load average {os.getloadavg()[0]:.1f}")
        if not (work / "queries.npy").exists():
            start = time.perf_counter()
            write_folders(work, args.rows, args.per_file)
            print(f"vectors written in {time.perf_counter() - start:.0f} s")
        bridge = make_bridge(work / "bridge.safetensors")
        for kind in ("moments", "files"):
            if not (work / f"index-{kind}").exists():
                took = ingest(work, kind, bridge)
                print(f"avsearch index --embeddings ({kind}): {took:.0f} s, load {os.getloadavg()[0]:.1f}")
        rng = np.random.default_rng(1)
        stored = np.load(work / "queries.npy", mmap_mode="r")
        picks = np.sort(rng.choice(len(stored), args.queries, replace=False))
        queries = np.asarray(stored[picks]) + 0.05 * rng.standard_normal((args.queries, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for kind in ("moments", "files"):
            got = latency(work / f"index-{kind}", queries, args.k)
            print(
                f"{kind:<8} ({got['ann']}): p50 {got['p50']:.1f} ms, p90 {got['p90']:.1f} ms, "
                f"p50 CPU {got['cpu50']:.1f} ms; merge_hits p50 {got['merge50']:.3f} ms; load {os.getloadavg()[0]:.1f}"
            )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
