"""Table 5 on synthetic spaces: every ablation of the C-MCR method, trained and scored the same way.

    python benchmarks/ablations.py [--pairs 20000] [--epochs 10] [--batch-size 1024] [--rows K F ...]

Two synthetic contrastive spaces share only text (avsearch.bridge.synthetic). For each row the bridge
is trained from scratch and scored by instance-level audio->image (A2I) and image->audio (I2A) mAP on
paired test events. The unconnected spaces and chance are printed for reference. Synthetic spaces are
easier than CLIP and CLAP, so absolute figures are far above the paper's; the comparison between rows
is the point (row F, no inter-MCR loss, must sit at chance).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.data import BridgeData
from avsearch.bridge.synthetic import SyntheticSpec, make_synthetic
from avsearch.bridge.train import train_bridge
from avsearch.evaluation.retrieval import chance_scores, retrieval_metrics

# Table 5 rows: (description, overrides). K is the full method.
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "A": ("intra CLIP only", {"intra": ("clip",)}),
    "B": ("intra CLAP only", {"intra": ("clap",)}),
    "C": ("no intra-MCR", {"intra": ("none",)}),
    "D": ("no L_ttc", {"ttc": False}),
    "E": ("no L_avc", {"avc": False}),
    "F": ("no inter-MCR (no L_ttc, no L_avc)", {"ttc": False, "avc": False}),
    "G": ("no re-normalisation", {"renorm": False}),
    "H": ("no noise, no re-normalisation", {"noise": False, "renorm": False}),
    "I": ("argmax consistency", {"mode": "argmax"}),
    "J": ("random consistency", {"mode": "random"}),
    "K": ("full method", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20_000, help="overlap texts (and memory rows per space)")
    parser.add_argument("--test", type=int, default=2_000, help="paired test events")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = make_synthetic(SyntheticSpec(n_text=args.pairs, n_memory=args.pairs, n_test=args.test, seed=args.seed))
    bundle = BridgeData((data.text_a, data.text_b), (data.image_a, data.audio_b), fingerprint="synthetic")
    base = with_overrides(load_train_config("audio_visual"), epochs=args.epochs, batch_size=args.batch_size)
    chance = chance_scores(args.test)
    raw = retrieval_metrics(data.test_audio_b, data.test_image_a)
    print(
        f"synthetic spaces: {args.pairs:,} texts, {args.pairs:,} images, {args.pairs:,} sounds, "
        f"{args.test:,} test pairs; {args.epochs} epochs, batch {args.batch_size}"
    )
    print(f"{'row':<4}{'setting':<36}{'A2I mAP':>9}{'I2A mAP':>9}{'A2I R@1':>9}{'A2I R@5':>9}{'train s':>9}")
    print(f"{'':<4}{'chance':<36}{chance.mAP:>9.2f}{chance.mAP:>9.2f}{chance.R1:>9.2f}{chance.R5:>9.2f}")
    print(
        f"{'':<4}{'unconnected spaces (no bridge)':<36}{raw['q2g'].mAP:>9.2f}{raw['g2q'].mAP:>9.2f}"
        f"{raw['q2g'].R1:>9.2f}{raw['q2g'].R5:>9.2f}"
    )
    for row in args.rows:
        label, overrides = ROWS[row]
        t0 = time.perf_counter()
        bridge = train_bridge(with_overrides(base, **overrides), bundle, progress=False).bridge
        seconds = time.perf_counter() - t0
        scores = retrieval_metrics(bridge.project("clap", data.test_audio_b), bridge.project("clip", data.test_image_a))
        a2i, i2a = scores["q2g"], scores["g2q"]
        print(
            f"{row:<4}{label:<36}{a2i.mAP:>9.2f}{i2a.mAP:>9.2f}{a2i.R1:>9.2f}{a2i.R5:>9.2f}{seconds:>9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
