"""CAV-MAE on CPU: embedding throughput, memory and one-file query latency, beside CLIP and CLAP.

Real weights cannot be downloaded on the benchmark machines, so every encoder runs with RANDOM
weights of its real architecture (tests/weights_factory.py: CAV-MAE in the release's pretrain layout,
191M values; open_clip ViT-B-32; laion_clap HTSAT-tiny fusion). Speed and memory do not depend on the
values. Each row runs in a fresh process, so its memory figures are its own:
- `load s`: load_encoder (weights are memory-mapped, so part of the reading happens on first use);
- `files/s`: encode_files on all files (decode + model, what `avsearch query` does per file; index
  runs the same model with decoding overlapped, so this is close to its CPU ceiling);
- `bare/s`: the model forward alone on already decoded inputs (items per second);
- `query ms`: encode_files on one file, best of 3 (the query-embedding latency);
- `RSS load` / `RSS peak`: resident memory after loading and the process's peak (VmHWM), MiB.
Files: JPEG 640x480 images, 10 s 44.1 kHz FLAC clips (CAV-MAE: one 10.24 s window each), and one
60 s clip (CAV-MAE: 6 windows, the max_windows default; CLAP: its fusion input, one forward).

Usage: .venv/bin/python benchmarks/cavmae.py [--images 8] [--audio 4] [--no-compare] [--threads N]
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


def _status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (resident peak) of this process, MiB. Not ru_maxrss: on Linux a
    spawned child starts with its parent's, and the parent held the random checkpoint."""
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def _measure(name: str, modality: str, files: list[Path], weights: Path, threads: int | None) -> dict[str, float]:
    """One row, in its own process."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from avsearch.encoders.registry import load_encoder

    start = time.perf_counter()
    enc = load_encoder(name, [modality], weights_dir=weights, device="cpu")
    load_s = time.perf_counter() - start
    rss_load = _status_mib("VmRSS")
    enc.encode_files(modality, files[:1])  # warm-up: first touch of the mapped weights, kernels
    start = time.perf_counter()
    enc.encode_files(modality, files)
    files_s = len(files) / (time.perf_counter() - start)
    items = [enc.prepare(modality, p) for p in files]
    start = time.perf_counter()
    enc.encode_prepared(modality, items)
    bare_s = len(files) / (time.perf_counter() - start)
    query = []
    for _ in range(3):
        start = time.perf_counter()
        enc.encode_files(modality, files[:1])
        query.append(time.perf_counter() - start)
    peak = _status_mib("VmHWM")
    return {"load": load_s, "files": files_s, "bare": bare_s, "query": min(query) * 1000, "rss": rss_load, "peak": peak}


def _row(args: tuple) -> dict[str, float]:
    return _measure(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--audio", type=int, default=4)
    parser.add_argument("--no-compare", action="store_true", help="CAV-MAE rows only (no CLIP/CLAP weights)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    from tests.weights_factory import make_av_weights, make_cavmae_weights

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = make_cavmae_weights(root / "weights")
        if not args.no_compare:
            make_av_weights(weights)
        images = []
        for i in range(args.images):
            images.append(root / f"img{i}.jpg")
            Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)).save(images[-1], quality=90)
        clips = []
        for i in range(args.audio):
            clips.append(root / f"clip{i}.flac")
            sf.write(clips[-1], (0.1 * rng.standard_normal(44_100 * 10)).astype(np.float32), 44_100)
        long_clip = root / "long.flac"
        sf.write(long_clip, (0.1 * rng.standard_normal(44_100 * 60)).astype(np.float32), 44_100)

        rows = [
            ("cavmae-scale-plus-plus", "image", images, f"{args.images} JPEG 640x480"),
            ("cavmae-scale-plus-plus", "audio", clips, f"{args.audio} FLAC 10 s"),
            ("cavmae-scale-plus-plus", "audio", [long_clip] * 2, "2 x FLAC 60 s (6 windows)"),
        ]
        if not args.no_compare:
            rows += [
                ("clip-vit-b-32-openai", "image", images, f"{args.images} JPEG 640x480"),
                ("clap-630k-fusion", "audio", clips, f"{args.audio} FLAC 10 s"),
                ("clap-630k-fusion", "audio", [long_clip] * 2, "2 x FLAC 60 s (fusion)"),
            ]
        print(f"CPU, {args.threads or 'default'} torch threads, random weights of the real architectures\n")
        header = f"{'encoder':24s} {'modality':8s} {'files':26s} {'load s':>7s} {'files/s':>8s} {'bare/s':>7s}"
        print(header + f" {'query ms':>9s} {'RSS load':>9s} {'RSS peak':>9s}")
        ctx = mp.get_context("spawn")
        for name, modality, files, label in rows:
            with ctx.Pool(1) as pool:  # a fresh process per row: its own peak memory
                r = pool.apply(_row, ((name, modality, files, weights, args.threads),))
            print(
                f"{name:24s} {modality:8s} {label:26s} {r['load']:7.1f} {r['files']:8.2f} {r['bare']:7.2f}"
                f" {r['query']:9.0f} {r['rss']:9.0f} {r['peak']:9.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
