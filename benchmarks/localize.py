"""Localisation speed on CPU: proposals (selective search, grid), crop embedding, per-picture latency.

Runs on the real CLIP and CLAP architectures with random weights (tests/weights_factory.py; real weights
take the same time) and synthetic pictures. Prints proposals/s for each stage and the per-picture latency
of `Localizer.localize` for a new picture (proposals + crops + projection + scoring; the sound cached).

    python benchmarks/localize.py [--pictures 3] [--side 480] [--mode fast] [--max-boxes 50] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avsearch.localize.config import load_localize_config  # noqa: E402
from avsearch.localize.crops import CropEmbedder  # noqa: E402
from avsearch.localize.pipeline import Localizer  # noqa: E402
from avsearch.localize.proposals import finalize, grid_boxes, selective_search  # noqa: E402
from tests.search.media_factory import write_audio  # noqa: E402
from tests.weights_factory import make_av_weights, make_released_bridges  # noqa: E402


def scene(seed: int, side: int) -> Image.Image:
    """A picture with a few coloured rectangles on a noisy background (selective search has work to do)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(90, 150, size=(side, side, 3)).astype(np.uint8)
    for _ in range(5):
        w, h = rng.integers(side // 8, side // 3, size=2)
        x, y = rng.integers(0, side - w), rng.integers(0, side - h)
        pixels[y : y + h, x : x + w] = rng.integers(0, 255, size=3)
    return Image.fromarray(pixels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pictures", type=int, default=3)
    ap.add_argument("--side", type=int, default=480)
    ap.add_argument("--mode", choices=("fast", "quality"), default="fast")
    ap.add_argument("--max-boxes", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--weights", type=Path, default=None, help="weights folder to reuse (else a temporary one)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights or Path(tempfile.mkdtemp(prefix="avsearch-bench-localize-"))
    make_released_bridges(make_av_weights(weights))
    cfg = load_localize_config()
    cfg = replace(cfg, proposals=replace(cfg.proposals, search_mode=args.mode, max_boxes=args.max_boxes))
    loc = Localizer(weights_dir=weights, device="cpu", proposals="search", config=cfg)
    work = Path(tempfile.mkdtemp(prefix="avsearch-bench-media-"))
    pictures = []
    for i in range(args.pictures):
        pictures.append(work / f"scene{i}.png")
        scene(i, args.side).save(pictures[-1])
    sound = write_audio(work / "sound.wav", seed=0, seconds=5.0)
    loc.audio_vector(sound)  # loads CLAP; the sound is cached from here on
    embedder = CropEmbedder(loc.clip, cfg.crops.batch)
    embedder.embed(Image.open(pictures[0]).convert("RGB"), grid_boxes(args.side, args.side, (1,)))  # warm-up

    t_search = t_grid = t_crops = 0.0
    n_search = n_grid = n_crops = 0
    for path in pictures:
        picture = Image.open(path).convert("RGB")
        start = time.perf_counter()
        found = selective_search(picture, cfg.proposals.search_mode, cfg.proposals.search_max_side)
        t_search += time.perf_counter() - start
        n_search += len(found)
        start = time.perf_counter()
        grid = grid_boxes(args.side, args.side, cfg.proposals.grid_scales)
        t_grid += time.perf_counter() - start
        n_grid += len(grid)
        boxes = finalize(found[: cfg.proposals.search_boxes] + grid, args.side, args.side, cfg.proposals)
        start = time.perf_counter()
        embedder.embed(picture, boxes)
        t_crops += time.perf_counter() - start
        n_crops += len(boxes)
    latencies = []
    for path in pictures:
        start = time.perf_counter()
        loc.localize(sound, path)
        latencies.append(time.perf_counter() - start)

    print(f"CPU, torch threads {torch.get_num_threads()}, {args.pictures} pictures {args.side}x{args.side}")
    print(
        f"selective search ({args.mode}): {n_search / t_search:8.1f} boxes/s, "
        f"{1000 * t_search / args.pictures:.0f} ms/picture"
    )
    print(f"grid {cfg.proposals.grid_scales}: {n_grid / max(t_grid, 1e-9):8.0f} boxes/s")
    print(
        f"crop embedding (CLIP ViT-B/32): {n_crops / t_crops:8.2f} crops/s, {n_crops / args.pictures:.0f} crops/picture"
    )
    print(
        f"localize, new picture: median {1000 * float(np.median(latencies)):.0f} ms, "
        f"max {1000 * max(latencies):.0f} ms ({n_crops / args.pictures:.0f} proposals each)"
    )


if __name__ == "__main__":
    main()
