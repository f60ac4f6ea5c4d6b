"""Which hop for sound segments (configs/media.toml [video] hop_s): rows per hour against whole events.

CLAP hears 10 s windows. A sound event is found best in a window that holds all of it; a shorter hop
makes more windows (rows to embed, store and search) and holds more events whole. For hops 2.5, 5 and
10 s, this cuts a 10-minute recording with avsearch.media.sound_windows.sound_segments (the code `index` runs)
and places 2,000 events of each length (1, 2, 5 and 8 s) at random onsets, then prints rows per hour
of sound and the share of events that some window holds whole (the segment a query should find), and
how far before the onset the latest such window starts, on average (the moment's precision). This is
geometry, not a model's recall: an event is held whole by some window for every onset exactly when it
is no longer than window - hop.

Usage: .venv/bin/python benchmarks/moment_hop.py [--events 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avsearch.media.sound_windows import sound_segments  # noqa: E402

RATE = 100  # samples a second: enough to place windows to 10 ms, cheap
SECONDS = 600.0
WINDOW = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    wave = np.zeros(int(SECONDS * RATE), np.float32)
    print(f"{'hop s':>6} {'rows/h':>7}  " + "  ".join(f"whole {n:g} s event (mean lead)" for n in (1, 2, 5, 8)))
    for hop in (2.5, 5.0, 10.0):
        spans = np.array([(s, e) for s, e, _ in sound_segments(wave, RATE, WINDOW, hop)])
        cells = []
        for length in (1.0, 2.0, 5.0, 8.0):
            onsets = rng.uniform(0, SECONDS - length, args.events)
            inside = (spans[None, :, 0] <= onsets[:, None]) & (spans[None, :, 1] >= onsets[:, None] + length)
            held = inside.any(axis=1)
            lead = np.where(inside, onsets[:, None] - spans[None, :, 0], np.inf).min(axis=1)[held]
            cells.append(f"{held.mean():>6.1%} ({lead.mean() if held.any() else float('nan'):>4.1f} s)")
        rows = len(spans) * 3600 / SECONDS
        print(f"{hop:>6g} {rows:>7.0f}  " + "  ".join(f"{c:>27}" for c in cells))


if __name__ == "__main__":
    main()
