"""Throughput of the 3D path on this machine: file reading/resampling and ULIP-2 PointBERT encoding.

Runs on the real architecture with randomly initialised weights (speed does not depend on the values),
so it needs no download:  .venv/bin/python benchmarks/pointcloud.py [--batch 4] [--clouds 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avsearch.device import pick_device
from avsearch.encoders.pointbert import PointBertEncoder
from avsearch.media.pointcloud import load_pointcloud


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--clouds", type=int, default=8)
    ap.add_argument("--raw-points", type=int, default=10000, help="points per file before resampling")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.clouds):
            p = Path(tmp) / f"c{i}.npy"
            np.save(p, rng.normal(size=(args.raw_points, 3)).astype(np.float32))
            paths.append(p)
        t0 = time.perf_counter()
        clouds = np.stack([load_pointcloud(p) for p in paths])
        read_s = time.perf_counter() - t0
    print(f"read+resample {args.raw_points} -> 8192 points: {args.clouds / read_s:.1f} files/s")

    model = PointBertEncoder().eval().to(device)
    x = torch.from_numpy(clouds).to(device)
    with torch.inference_mode():
        model(x[: args.batch])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for start in range(0, len(x), args.batch):
            model(x[start : start + args.batch])
        if device.type == "cuda":
            torch.cuda.synchronize()
        enc_s = time.perf_counter() - t0
    n = len(x)
    print(
        f"PointBERT on {device} ({torch.get_num_threads()} threads), batch {args.batch}: "
        f"{n / enc_s:.2f} clouds/s, {n * 8192 / enc_s:,.0f} points/s"
    )


if __name__ == "__main__":
    main()
