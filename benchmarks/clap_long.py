"""How much CLAP's long-clip mode changes vectors and retrieval: "fusion" vs "window-mean".

Clips over 10 s are embedded either with the fusion checkpoint's own input (whole-clip mel shrunk to
10 s + three fixed 10 s crops; the default) or as the mean of evenly spaced 10 s window vectors (the
old behaviour, `long_clip = "window-mean"` in configs/encoders.toml). Clips up to 10 s are the same in
both modes. Real weights cannot be downloaded here, so the model has RANDOM weights of the real
architecture (tests/weights_factory.py): the figures say how far the two modes move vectors and
rankings apart, not which one retrieves better on real sound.

Data: N generated long clips (FLAC, 44.1 kHz, lengths spread between --min-seconds and --max-seconds),
each a sequence of 2.5 s segments (tones and noise of the clip's own random palette), and per clip one
query: a random 7 s excerpt of it with added noise (<= 10 s, so its vector is mode-independent).
Printed:
- per clip: cosine between its window-mean and fusion vectors (min / median / max);
- retrieval query -> gallery of long clips, each mode: recall@1 and mean rank of the source clip;
- agreement of the two modes: same top-1, overlap of the top-3, Spearman correlation of the scores;
- time per long clip (decode + resample + features + model) in each mode.

Usage: .venv/bin/python benchmarks/clap_long.py [--clips 10] [--min-seconds 15] [--max-seconds 45]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.weights_factory

from avsearch.encoders.registry import load_encoder  # noqa: E402
from tests.weights_factory import make_clap_weights  # noqa: E402

RATE = 44_100


def _palette_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Segments of 2.5 s drawn from a 4-sound palette of this clip (tone frequency, noise level)."""
    freqs, noise = rng.uniform(120, 5000, size=4), rng.uniform(0.0, 0.3, size=4)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    pick = rng.integers(0, 4, size=int(seconds / 2.5) + 1)[(t // 2.5).astype(int)]
    wave = 0.4 * np.sin(2 * np.pi * freqs[pick] * t) + noise[pick] * rng.standard_normal(n)
    return np.clip(wave, -1, 1).astype(np.float32)


def _ranks(scores: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(-scores, axis=1), axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=15.0)
    parser.add_argument("--max-seconds", type=float, default=45.0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = make_clap_weights(root / "weights")
        gallery, queries, seconds = [], [], np.linspace(args.min_seconds, args.max_seconds, args.clips)
        for i, sec in enumerate(seconds):
            wave = _palette_clip(rng, float(sec))
            start = int(rng.integers(0, len(wave) - 7 * RATE))
            excerpt = wave[start : start + 7 * RATE] + 0.05 * rng.standard_normal(7 * RATE).astype(np.float32)
            for folder, data in ((gallery, wave), (queries, np.clip(excerpt, -1, 1))):
                path = root / f"{'g' if folder is gallery else 'q'}{i}.flac"
                sf.write(path, data, RATE)
                folder.append(path)

        fusion = load_encoder("clap-630k-fusion", ["audio"], weights_dir=weights, device=args.device)
        mean = fusion.with_long_clip("window-mean")
        fusion.encode_files("audio", queries[:1])  # warm-up (allocator, thread pools)
        vectors, per_clip = {}, {}
        for name, enc in (("window-mean", mean), ("fusion", fusion)):
            start = time.perf_counter()
            vectors[name] = enc.encode_files("audio", gallery)
            per_clip[name] = (time.perf_counter() - start) / len(gallery)
        q = fusion.encode_files("audio", queries)

    cos = np.sum(vectors["window-mean"] * vectors["fusion"], axis=1)
    truth = np.arange(len(gallery))
    scores = {name: q @ v.T for name, v in vectors.items()}
    ranks = {name: _ranks(s) for name, s in scores.items()}
    top1 = {name: s.argmax(axis=1) for name, s in scores.items()}
    top3 = {name: np.argsort(-s, axis=1)[:, :3] for name, s in scores.items()}
    overlap3 = np.mean([len(set(a) & set(b)) / 3 for a, b in zip(top3["window-mean"], top3["fusion"], strict=True)])
    spearman = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(ranks["window-mean"], ranks["fusion"], strict=True)])

    print(f"device: {fusion.device} ({torch.get_num_threads()} CPU threads); RANDOM weights of the real architecture")
    print(f"{len(gallery)} long clips, {args.min_seconds:.0f}-{args.max_seconds:.0f} s; 1 query (7 s excerpt) each")
    print(
        f"cosine(window-mean, fusion) per clip: min {cos.min():.3f}  median {np.median(cos):.3f}  max {cos.max():.3f}"
    )
    print(f"{'mode':14}{'recall@1':>10}{'mean rank':>11}{'s / clip':>10}")
    for name in ("window-mean", "fusion"):
        recall = float(np.mean(top1[name] == truth))
        mean_rank = float(np.mean(ranks[name][truth, truth])) + 1
        print(f"{name:14}{recall:10.2f}{mean_rank:11.2f}{per_clip[name]:10.2f}")
    same_top1 = float(np.mean(top1["window-mean"] == top1["fusion"]))
    print(f"agreement: same top-1 {same_top1:.2f}, top-3 overlap {overlap3:.2f}, Spearman of rankings {spearman:.2f}")


if __name__ == "__main__":
    main()
