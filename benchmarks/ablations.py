"""Table 5 on synthetic spaces: every ablation of the C-MCR method, over several seeds.

    python benchmarks/ablations.py [--pairs 6000] [--epochs 5] [--batch-size 512] [--seeds 0 1 2]
                                   [--rows K C D ...] [--dim 128]

Two synthetic contrastive spaces share only text (avsearch.bridge.synthetic). For each row and seed a
fresh world is generated, the bridge trained from scratch and scored by instance-level audio->image
(A2I) and image->audio (I2A) mAP on paired test events. Each row prints the mean over seeds and the
spread (sample standard deviation, worlds differ), then the margin of the full method K over the row
(mean of A2I and I2A, paired by seed) and that margin in units of the paired differences' spread.
Row "K-shared" is K with one blend of BatchNorm statistics (before per-kind statistics and
calibration). Chance and the unconnected spaces are printed for reference.
"""

from __future__ import annotations

import argparse
import statistics
import time

from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.synthetic import SyntheticSpec, make_synthetic
from avsearch.evaluation.ablations import ROWS, SHARED_STATS, narrow, run_row
from avsearch.evaluation.retrieval import chance_scores, retrieval_metrics


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=6_000, help="overlap texts (and memory rows per space)")
    parser.add_argument("--test", type=int, default=1_000, help="paired test events")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--dim", type=int, default=128, help="embedding width of both spaces (CLIP: 512)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    rows = [*ROWS, SHARED_STATS]
    parser.add_argument("--rows", nargs="+", default=rows, choices=rows)
    args = parser.parse_args()

    base = with_overrides(load_train_config("audio_visual"), epochs=args.epochs, batch_size=args.batch_size)
    specs = [
        SyntheticSpec(n_text=args.pairs, n_memory=args.pairs, n_test=args.test, dim=args.dim, seed=s)
        for s in args.seeds
    ]
    base = narrow(base, args.dim)
    worlds = [make_synthetic(spec) for spec in specs]
    chance = chance_scores(args.test)
    raw = [retrieval_metrics(w.test_audio_b, w.test_image_a)["q2g"].mAP for w in worlds]
    print(
        f"synthetic spaces: {args.pairs:,} texts, images, sounds; {args.test:,} test pairs; dim {args.dim}; "
        f"{args.epochs} epochs, batch {args.batch_size}; seeds {args.seeds}"
    )
    print(f"chance A2I mAP {chance.mAP:.2f}; unconnected spaces {statistics.mean(raw):.2f}")
    head = f"{'row':<9}{'setting':<36}{'A2I mAP':>16}{'I2A mAP':>16}{'K - row':>9}{'/ spread':>9}{'train s':>9}"
    print(head)
    results: dict[str, list[float]] = {}
    order = sorted(args.rows, key=lambda r: r != "K")  # K first: the margins are measured against it
    for row in order:
        t0 = time.perf_counter()
        runs = [run_row(row, base, w) for w in worlds]
        seconds = (time.perf_counter() - t0) / len(worlds)
        a2i, i2a = [r.a2i.mAP for r in runs], [r.i2a.mAP for r in runs]
        results[row] = [(a + b) / 2 for a, b in zip(a2i, i2a, strict=True)]
        margin, units = "", ""
        if "K" in results and row != "K":
            # Paired by seed (same world): the spread of the differences, not of worlds, is the noise.
            diffs = [k - r for k, r in zip(results["K"], results[row], strict=True)]
            spread = _spread(diffs)
            margin = f"{statistics.mean(diffs):>9.2f}"
            units = f"{statistics.mean(diffs) / spread:>9.1f}" if spread > 0 else f"{'inf':>9}"
        label = ROWS[row][0] if row in ROWS else "full method, shared BatchNorm stats"
        print(
            f"{row:<9}{label:<36}{statistics.mean(a2i):>9.2f} ± {_spread(a2i):<4.2f}"
            f"{statistics.mean(i2a):>9.2f} ± {_spread(i2a):<4.2f}{margin:>9}{units:>9}{seconds:>9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
