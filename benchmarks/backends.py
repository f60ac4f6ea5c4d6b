"""The two search backends side by side on CPU, through the product: `avsearch index --backend X` and
queries with `--backend X` (benchmarks/cavmae.py measures the bare encoders).

Real weights cannot be downloaded on the benchmark machines, so every model runs with RANDOM weights of
its real architecture (tests/weights_factory.py: CAV-MAE-Scale++ in the release layout; CLIP ViT-B/32,
CLAP HTSAT fusion, the released C-MCR bridges' shapes). Speed and memory do not depend on the values.
Each backend runs in a fresh process, so its memory figures are its own:
- `index s` / `files/s`: index_folder over the same folder into a new index with only that backend
  (decode, encode, bridge projection for C-MCR, LanceDB writes, FAISS build);
- `RSS peak`: the process's peak resident memory (VmHWM) over the run and the queries, MiB;
- `audio q ms` / `image q ms`: one file query against every target (embedding + search), best over
  3 other files after a warm-up on a first one (models loaded; each query a new file, so no cached
  query embedding);
- `id q ms`: more like an indexed item (its stored vectors: no model runs), best of 3.
Needs at least 4 pictures and 4 clips.
Files: JPEG 640x480 pictures and 10 s 44.1 kHz FLAC clips.

Usage: .venv/bin/python benchmarks/backends.py [--images 6] [--audio 4] [--threads N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.weights_factory


def _peak_mib() -> float:
    """VmHWM (resident peak) of this process, MiB (not ru_maxrss: a spawned child starts at its parent's)."""
    with open("/proc/self/status") as fh:
        return int(next(x for x in fh if x.startswith("VmHWM:")).split()[1]) / 1024


def _best_ms(run, args: list) -> float:
    """Best time of run(x) over args[1:] after a warm-up on args[0] (models load, FAISS reads). Each call
    gets another file: the engine reuses a query's embedding when the same file is asked again."""
    run(args[0])
    times = []
    for x in args[1:]:
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def _measure(backend: str, media: Path, index_dir: Path, weights: Path, threads: int | None) -> dict[str, float]:
    """One backend, in its own process: index the folder, then time the three kinds of query."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from avsearch.indexing.pipeline import index_folder
    from avsearch.search.engine import SearchEngine
    from avsearch.store.index import Index

    start = time.perf_counter()
    summary = index_folder(media, index_dir, weights_dir=weights, device="cpu", backend=backend)
    seconds = time.perf_counter() - start
    engine = SearchEngine(Index.open(index_dir, weights_dir=weights, device="cpu"))
    audio, image = sorted(media.glob("*.flac"))[:4], sorted(media.glob("*.jpg"))[:4]
    return {
        "files": summary.embedded[backend],
        "seconds": seconds,
        "audio": _best_ms(lambda f: engine.search_file(f, "audio", backend=backend), audio),
        "image": _best_ms(lambda f: engine.search_file(f, "image", backend=backend), image),
        "item": _best_ms(lambda f: engine.search_item(str(f), backend=backend), image),
        "peak": _peak_mib(),
    }


def _row(args: tuple) -> dict[str, float]:
    return _measure(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--audio", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    from tests.weights_factory import make_cavmae_weights, make_full_weights

    with tempfile.TemporaryDirectory(prefix="avsearch-bench-backends-") as tmp:
        root = Path(tmp)
        weights = make_full_weights(make_cavmae_weights(root / "weights"))
        media = root / "media"
        media.mkdir()
        for i in range(args.images):
            pixels = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(media / f"img{i}.jpg", quality=90)
        for i in range(args.audio):
            sf.write(media / f"clip{i}.flac", (0.1 * rng.standard_normal(441_000)).astype(np.float32), 44_100)
        label = f"{args.images} JPEG 640x480 + {args.audio} FLAC 10 s"
        print(f"CPU, {args.threads or 'default'} torch threads, random weights of the real architectures; {label}\n")
        print(
            f"{'backend':8s} {'files':>6s} {'index s':>8s} {'files/s':>8s} {'audio q ms':>11s} {'image q ms':>11s}"
            f" {'id q ms':>8s} {'RSS peak':>9s}"
        )
        ctx = mp.get_context("spawn")
        for backend in ("cmcr", "cavmae"):
            with ctx.Pool(1) as pool:  # a fresh process per backend: its own peak memory
                r = pool.apply(_row, ((backend, media, root / f"index-{backend}", weights, args.threads),))
            print(
                f"{backend:8s} {r['files']:6d} {r['seconds']:8.1f} {r['files'] / r['seconds']:8.2f}"
                f" {r['audio']:11.0f} {r['image']:11.0f} {r['item']:8.1f} {r['peak']:9.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
